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
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    let addr = SockAddr::unix(path)?;
    let old = rustix::process::umask(Mode::from_bits_truncate(0o777 & !mode));
    let bound = socket.bind(&addr);
    rustix::process::umask(old);
    bound?;
    let chmod = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .and_then(|()| socket.listen(BACKLOG));
    if let Err(e) = chmod {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
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
