//! unix: a listener on a Unix stream socket (`--unix-listen FILE`, `--unix-listen-mode`), or
//! one inherited from `--inetd`.
//!
//! Binding: a stale socket file (nobody accepts on it) is replaced; a live socket or a file that
//! is not a socket is an error naming it, and is left alone (the reference unlinks whatever is
//! there). The file is created with the requested mode (umask set for the bind, then chmod), so
//! it is never reachable with wider permissions; it is removed when the listener is dropped
//! (clean exit) if it is still the one we created.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use rustix::fs::Mode;
use socket2::{Domain, SockAddr, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};

use super::{Accepted, Listener, Stream};
use crate::conninfo::Addr;

/// Pending connections the kernel queues for us, as for TCP.
const BACKLOG: i32 = 1024;

/// A bound Unix listener.
#[derive(Debug)]
pub struct Unix {
    listener: UnixListener,
    path: Option<PathBuf>,
    /// The socket file this listener created, removed on drop while it is still that file.
    #[allow(dead_code)] // held for its Drop
    created: Option<Created>,
}

/// A socket file we made: its path and identity (device, inode).
#[derive(Debug)]
struct Created {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

/// A Unix listener bound before any runtime exists (`-D` forks after binding); its socket
/// file is removed if it is dropped unregistered (a later start-up check failed).
#[derive(Debug)]
pub struct PreparedUnix {
    listener: std::os::unix::net::UnixListener,
    created: Created,
}

impl PreparedUnix {
    /// [`Unix::bind`] without the runtime.
    pub fn bind(path: &Path, mode: u32) -> io::Result<PreparedUnix> {
        let named = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on unix:{}: {e}", path.display()),
            )
        };
        clear_stale(path).map_err(named)?;
        let socket = bind_with_mode(path, mode).map_err(named)?;
        let meta = std::fs::symlink_metadata(path).map_err(named)?;
        Ok(PreparedUnix {
            listener: socket.into(),
            created: Created {
                path: path.to_path_buf(),
                dev: meta.dev(),
                ino: meta.ino(),
            },
        })
    }

    /// Hands the socket to the runtime (must run inside it).
    pub fn register(self) -> io::Result<Unix> {
        let named = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on unix:{}: {e}", self.created.path.display()),
            )
        };
        let listener = UnixListener::from_std(self.listener).map_err(named)?;
        Ok(Unix {
            listener,
            path: Some(self.created.path.clone()),
            created: Some(self.created),
        })
    }
}

impl Unix {
    /// Binds a Unix stream socket at `path` with permission bits `mode`, replacing a stale
    /// socket file there. The error names the file.
    pub fn bind(path: &Path, mode: u32) -> io::Result<Unix> {
        PreparedUnix::bind(path, mode)?.register()
    }

    /// Wraps a listener bound elsewhere (`--inetd`): its file, if any, is not ours to remove.
    pub fn inherited(listener: std::os::unix::net::UnixListener) -> io::Result<Unix> {
        listener.set_nonblocking(true)?;
        let path = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_path_buf));
        Ok(Unix {
            listener: UnixListener::from_std(listener)?,
            path,
            created: None,
        })
    }
}

/// Makes room at `path`: nothing there is fine; a socket nobody accepts on is removed; a live
/// socket or any other kind of file is an error (and stays).
fn clear_stale(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the file exists and is not a socket (left alone)",
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process is listening on this socket",
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }
        Err(e) => Err(e),
    }
}

/// Binds and listens at `path`, the file created with exactly `mode`: the umask hides every
/// other bit during `bind` (as the reference does), so there is no moment with wider
/// permissions; a chmod then sets what a umask cannot (bits the process umask would not
/// normally clear are covered too). The umask is process-wide: this runs at start-up, before
/// anything else creates files.
fn bind_with_mode(path: &Path, mode: u32) -> io::Result<Socket> {
    let socket = bind_masked(path, mode)?;
    let chmod = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .and_then(|()| socket.listen(BACKLOG));
    if let Err(e) = chmod {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(socket)
}

/// The `bind` of [`bind_with_mode`], under the umask that leaves no permission bit outside
/// `mode`: the file exists from here on, and must never have had more than `mode`.
fn bind_masked(path: &Path, mode: u32) -> io::Result<Socket> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    let addr = SockAddr::unix(path)?;
    let old = rustix::process::umask(Mode::from_bits_truncate(0o777 & !mode));
    let bound = socket.bind(&addr);
    rustix::process::umask(old);
    bound?;
    Ok(socket)
}

impl Drop for Created {
    /// Removes the socket file we created, unless it has been replaced since (by another
    /// instance that found ours stale, say).
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if meta.dev() == self.dev && meta.ino() == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

impl Unix {
    /// One accept, polled: for a listener that waits on several sockets at once (`--systemd`).
    pub(super) fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Accepted<UnixConn>>> {
        let (stream, _) = ready!(self.listener.poll_accept(cx))?;
        Poll::Ready(Ok(Accepted {
            stream: UnixConn {
                stream,
                first: None,
            },
            peer: Addr::Unix(None),
            local: Addr::Unix(self.path.clone()),
        }))
    }
}

impl Listener for Unix {
    type Stream = UnixConn;

    async fn accept(&mut self) -> io::Result<Accepted<UnixConn>> {
        let (stream, _) = self.listener.accept().await?;
        Ok(Accepted {
            stream: UnixConn {
                stream,
                first: None,
            },
            // A connecting client's end is almost always unnamed.
            peer: Addr::Unix(None),
            local: Addr::Unix(self.path.clone()),
        })
    }

    fn local_addr(&self) -> io::Result<Addr> {
        Ok(Addr::Unix(self.path.clone()))
    }
}

/// An accepted Unix connection. tokio's Unix streams cannot peek, so the first byte is read
/// and handed out again by the first read: one byte of state, untouched after the first read.
pub struct UnixConn {
    stream: UnixStream,
    first: Option<u8>,
}

impl Stream for UnixConn {
    async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.first.is_none() {
            let mut byte = [0u8; 1];
            if self.stream.read(&mut byte).await? == 0 {
                return Ok(0);
            }
            self.first = Some(byte[0]);
        }
        match self.first {
            Some(byte) => {
                buf[0] = byte;
                Ok(1)
            }
            None => Ok(0),
        }
    }
}

impl AsyncRead for UnixConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(byte) = this.first {
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            buf.put_slice(&[byte]);
            this.first = None;
            return Poll::Ready(Ok(()));
        }
        ready!(Pin::new(&mut this.stream).poll_read(cx, buf))?;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for UnixConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A fresh directory of this test's own.
    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("websockify-unix-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn mode_of(path: &Path) -> u32 {
        let meta = std::fs::symlink_metadata(path).unwrap();
        assert!(
            meta.file_type().is_socket(),
            "{} is no socket",
            path.display()
        );
        meta.permissions().mode() & 0o7777
    }

    /// A bounded wait: a test that would hang fails instead.
    async fn bounded<F: std::future::Future>(what: &str, f: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer in 10 s"))
    }

    /// The socket file is made under the umask that hides every bit outside the mode, so it is
    /// never reachable with wider permissions, not even before the chmod.
    #[test]
    fn the_socket_file_never_has_a_bit_outside_its_mode() {
        let dir = temp_dir("mode");
        for mode in [0o600, 0o640, 0o666] {
            let path = dir.join(format!("masked-{mode:o}.sock"));
            let _socket = bind_masked(&path, mode).unwrap();
            assert_eq!(mode_of(&path), mode, "as bound, mode {mode:o}");
            let path = dir.join(format!("bound-{mode:o}.sock"));
            let _listener = PreparedUnix::bind(&path, mode).unwrap();
            assert_eq!(mode_of(&path), mode, "after the chmod, mode {mode:o}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A socket nobody accepts on is replaced; a live one (stream or datagram), a regular file
    /// or a directory is an error naming the path, and stays as it was.
    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_anything_else_left_alone() {
        let dir = temp_dir("stale");
        let path = dir.join("ws.sock");
        let named = |e: &io::Error| e.to_string().contains(&format!("unix:{}", path.display()));

        // Stale: bound, then its listener closed; the file stays behind.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let mut listener = Unix::bind(&path, 0o600).unwrap();
        let _client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        bounded("accept", listener.accept()).await.unwrap();
        drop(listener);

        // Live: someone accepts there.
        let live = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let err = Unix::bind(&path, 0o600).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert!(
            named(&err) && err.to_string().contains("another process is listening"),
            "{err}"
        );
        std::os::unix::net::UnixStream::connect(&path).unwrap();
        drop(live);
        std::fs::remove_file(&path).unwrap();

        // A datagram socket's file: a stream connect gets EPROTOTYPE, not "refused".
        let datagram = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let err = Unix::bind(&path, 0o600).unwrap_err();
        assert!(named(&err), "{err}");
        datagram.send_to(b"still there", &path).unwrap();
        drop(datagram);
        std::fs::remove_file(&path).unwrap();

        // A regular file and a directory.
        std::fs::write(&path, b"user data").unwrap();
        let err = Unix::bind(&path, 0o600).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert!(
            named(&err) && err.to_string().contains("not a socket (left alone)"),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"user data");
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let err = Unix::bind(&path, 0o600).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert!(path.is_dir());
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The file goes with the listener (a clean exit), unless another one has replaced it
    /// since: that one is not ours to remove.
    #[test]
    fn dropping_the_listener_removes_its_file_unless_it_was_replaced() {
        let dir = temp_dir("drop");
        let path = dir.join("ws.sock");
        let ours = PreparedUnix::bind(&path, 0o600).unwrap();
        drop(ours);
        assert!(!path.exists(), "our socket file stayed");

        // Theirs made while ours exists (so never with our inode number), then moved over it.
        let ours = PreparedUnix::bind(&path, 0o600).unwrap();
        let other = dir.join("other.sock");
        let _theirs = std::os::unix::net::UnixListener::bind(&other).unwrap();
        std::fs::rename(&other, &path).unwrap();
        drop(ours);
        assert!(
            path.exists(),
            "a socket file that replaced ours was removed"
        );
        std::os::unix::net::UnixStream::connect(&path).unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A listener and one accepted connection at `dir/ws.sock`, with the client's end.
    async fn connected(dir: &Path) -> (Unix, UnixConn, UnixStream) {
        let path = dir.join("ws.sock");
        let mut listener = Unix::bind(&path, 0o600).unwrap();
        let client = UnixStream::connect(&path).await.unwrap();
        let accepted = bounded("accept", listener.accept()).await.unwrap();
        assert_eq!(accepted.peer, Addr::Unix(None));
        assert_eq!(accepted.local, Addr::Unix(Some(path)));
        (listener, accepted.stream, client)
    }

    /// tokio's Unix streams cannot peek: the first byte is read, shown by every peek, and
    /// handed out again by the first read, before the rest.
    #[tokio::test]
    async fn peek_shows_the_first_byte_and_the_first_read_gives_it_back() {
        let dir = temp_dir("peek");
        let (_listener, mut conn, mut client) = connected(&dir).await;
        client.write_all(b"hello").await.unwrap();
        let mut first = [0u8; 4];
        assert_eq!(bounded("peek", conn.peek(&mut first)).await.unwrap(), 1);
        assert_eq!(first[0], b'h');
        first[0] = 0;
        assert_eq!(
            bounded("peek again", conn.peek(&mut first)).await.unwrap(),
            1
        );
        assert_eq!(first[0], b'h');
        // A read into no room takes nothing, not even the byte held back.
        assert_eq!(conn.read(&mut []).await.unwrap(), 0);
        let mut all = [0u8; 5];
        bounded("read", conn.read_exact(&mut all)).await.unwrap();
        assert_eq!(&all, b"hello");

        // At the end of the stream, peek says 0.
        let end = temp_dir("peek-end");
        let (_listener, mut conn, client) = connected(&end).await;
        drop(client);
        assert_eq!(bounded("peek", conn.peek(&mut first)).await.unwrap(), 0);
        let _ = std::fs::remove_dir_all(dir);
        let _ = std::fs::remove_dir_all(end);
    }

    /// Writes (plain and vectored) reach the client whole, and the shutdown ends its stream
    /// while the server still holds the connection.
    #[tokio::test]
    async fn writes_and_the_shutdown_reach_the_client() {
        let dir = temp_dir("write");
        let (_listener, mut conn, mut client) = connected(&dir).await;
        assert!(conn.is_write_vectored());
        conn.write_all(b"plain ").await.unwrap();
        let slices = [io::IoSlice::new(b"vec"), io::IoSlice::new(b"tored")];
        let n = conn.write_vectored(&slices).await.unwrap();
        assert_eq!(n, 8, "a vectored write of 8 bytes to an empty socket");
        conn.flush().await.unwrap();
        conn.shutdown().await.unwrap();
        let mut got = Vec::new();
        bounded("the end of stream", client.read_to_end(&mut got))
            .await
            .unwrap();
        assert_eq!(got, b"plain vectored");
        drop(conn);
        let _ = std::fs::remove_dir_all(dir);
    }
}
