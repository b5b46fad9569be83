//! inetd: `--inetd`, the listening socket is standard input, as inetd passes it in its `wait`
//! mode (and as the reference, which accepts from `socket.fromfd(stdin)`). A TCP or a Unix
//! stream socket; anything else on stdin (a terminal, a file, an already-connected socket of
//! inetd's `nowait` mode) is a start-up error.

use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use socket2::{Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::tcp::Tcp;
use super::unix::{Unix, UnixConn};
use super::{Accepted, Listener, Stream};
use crate::conninfo::Addr;

/// The start-up error for a standard input that is not a listening stream socket.
pub const NOT_A_LISTENER: &str = "--inetd: standard input is not a listening socket";

/// The listening socket inherited on standard input.
#[derive(Debug)]
pub enum Inetd {
    Tcp(Tcp),
    Unix(Unix),
}

impl Inetd {
    /// Takes the listening socket on standard input (a duplicate of fd 0: stdin itself stays
    /// open). Must run inside the runtime.
    pub fn from_stdin() -> io::Result<Inetd> {
        PreparedInetd::from_stdin()?.register()
    }
}

/// The socket on standard input, checked before any runtime exists (`-D` forks after it).
#[derive(Debug)]
pub struct PreparedInetd(Socket);

impl PreparedInetd {
    /// Checks that standard input is a listening stream socket and takes a duplicate of it.
    pub fn from_stdin() -> io::Result<PreparedInetd> {
        let refused = |why: &dyn std::fmt::Display| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{NOT_A_LISTENER} ({why})"),
            )
        };
        let fd = io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| refused(&e))?;
        let socket = Socket::from(fd);
        // getsockname fails with ENOTSOCK on a terminal, a pipe or a file.
        let local = socket.local_addr().map_err(|e| refused(&e))?;
        if socket.r#type().map_err(|e| refused(&e))? != Type::STREAM {
            return Err(refused(&"not a stream socket"));
        }
        if !socket.is_listener().map_err(|e| refused(&e))? {
            return Err(refused(&"not listening: inetd must pass it in `wait` mode"));
        }
        if !local.is_unix() && local.as_socket().is_none() {
            return Err(refused(&"neither a TCP nor a Unix socket"));
        }
        socket.set_nonblocking(true)?;
        Ok(PreparedInetd(socket))
    }

    /// Hands the socket to the runtime (must run inside it).
    pub fn register(self) -> io::Result<Inetd> {
        Inetd::register(self.0)
    }
}

impl Inetd {
    /// Wraps a checked, nonblocking listening socket (TCP or Unix) for the runtime.
    pub(super) fn register(socket: Socket) -> io::Result<Inetd> {
        if socket.local_addr()?.is_unix() {
            Ok(Inetd::Unix(Unix::inherited(socket.into())?))
        } else {
            let std: std::net::TcpListener = socket.into();
            Ok(Inetd::Tcp(Tcp::new(tokio::net::TcpListener::from_std(
                std,
            )?)?))
        }
    }
}

impl Inetd {
    /// One accept, polled (`--systemd` waits on several sockets at once).
    pub(super) fn poll_accept(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Accepted<InetdStream>>> {
        Poll::Ready(Ok(match self {
            Inetd::Tcp(tcp) => {
                let a = std::task::ready!(tcp.poll_accept(cx))?;
                Accepted {
                    stream: InetdStream::Tcp(a.stream),
                    peer: a.peer,
                    local: a.local,
                }
            }
            Inetd::Unix(unix) => {
                let a = std::task::ready!(unix.poll_accept(cx))?;
                Accepted {
                    stream: InetdStream::Unix(a.stream),
                    peer: a.peer,
                    local: a.local,
                }
            }
        }))
    }
}

impl Listener for Inetd {
    type Stream = InetdStream;

    async fn accept(&mut self) -> io::Result<Accepted<InetdStream>> {
        Ok(match self {
            Inetd::Tcp(tcp) => {
                let a = tcp.accept().await?;
                Accepted {
                    stream: InetdStream::Tcp(a.stream),
                    peer: a.peer,
                    local: a.local,
                }
            }
            Inetd::Unix(unix) => {
                let a = unix.accept().await?;
                Accepted {
                    stream: InetdStream::Unix(a.stream),
                    peer: a.peer,
                    local: a.local,
                }
            }
        })
    }

    fn local_addr(&self) -> io::Result<Addr> {
        match self {
            Inetd::Tcp(tcp) => tcp.local_addr(),
            Inetd::Unix(unix) => unix.local_addr(),
        }
    }

    fn describe(&self) -> String {
        match self.local_addr() {
            Ok(addr) => format!("{addr} (inetd: standard input)"),
            Err(_) => "inetd (standard input)".into(),
        }
    }
}

/// A connection accepted from the inherited socket.
pub enum InetdStream {
    Tcp(TcpStream),
    Unix(UnixConn),
}

impl Stream for InetdStream {
    async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            InetdStream::Tcp(s) => Stream::peek(s, buf).await,
            InetdStream::Unix(s) => s.peek(buf).await,
        }
    }
}

impl AsyncRead for InetdStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            InetdStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            InetdStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for InetdStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            InetdStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            InetdStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            InetdStream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            InetdStream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            InetdStream::Tcp(s) => s.is_write_vectored(),
            InetdStream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            InetdStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            InetdStream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            InetdStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            InetdStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::IoSlice;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn bounded<F: std::future::Future>(fut: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .expect("hung for 10 s")
    }

    /// A listening socket as inetd passes it: bound, listening, nonblocking.
    fn inherited_tcp() -> Socket {
        let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std.set_nonblocking(true).unwrap();
        Socket::from(std)
    }

    #[tokio::test]
    async fn the_inherited_socket_is_described_by_its_address() {
        let inetd = Inetd::register(inherited_tcp()).unwrap();
        let Ok(Addr::Tcp(addr)) = inetd.local_addr() else {
            panic!("not a TCP address")
        };
        assert_eq!(inetd.describe(), format!("{addr} (inetd: standard input)"));
    }

    /// A TCP and a Unix connection accepted from the inherited socket: peeked without being
    /// consumed, read, written (plainly and vectored), and shut down while still open.
    #[tokio::test]
    async fn accepted_connections_peek_read_write_and_shut_down() {
        let dir = std::env::temp_dir().join(format!("websockify-inetd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("inetd.sock");
        let unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
        unix.set_nonblocking(true).unwrap();
        for socket in [inherited_tcp(), Socket::from(unix)] {
            let mut inetd = Inetd::register(socket).unwrap();
            let mut client: Box<dyn Peer> = match inetd.local_addr().unwrap() {
                Addr::Tcp(addr) => Box::new(tokio::net::TcpStream::connect(addr).await.unwrap()),
                _ => Box::new(tokio::net::UnixStream::connect(&path).await.unwrap()),
            };
            let mut stream = bounded(inetd.accept()).await.unwrap().stream;
            let kind = inetd.describe();
            client.write_all(b"GET /").await.unwrap();
            let mut first = [0u8; 8];
            let n = bounded(stream.peek(&mut first)).await.unwrap();
            assert!(n >= 1 && first[..n] == b"GET /"[..n], "{kind}: peeked {n}");
            let mut head = [0u8; 5];
            bounded(stream.read_exact(&mut head)).await.unwrap();
            assert_eq!(&head, b"GET /", "{kind}");

            assert!(stream.is_write_vectored(), "{kind}");
            stream.write_all(b"HTTP/1.1 ").await.unwrap();
            let answer = b"101 Switching";
            let n = stream
                .write_vectored(&[IoSlice::new(&answer[..4]), IoSlice::new(&answer[4..])])
                .await
                .unwrap();
            assert!(n > 0, "{kind}");
            stream.write_all(&answer[n..]).await.unwrap();
            stream.flush().await.unwrap();
            // The shutdown reaches the client while the stream is still held.
            stream.shutdown().await.unwrap();
            let mut got = Vec::new();
            bounded(client.read_to_end(&mut got)).await.unwrap();
            assert_eq!(got, b"HTTP/1.1 101 Switching", "{kind}");
            drop(stream);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    trait Peer: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin {}
    impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Peer for T {}
}
