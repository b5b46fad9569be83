//! unix: a listener on a Unix stream socket (for `--unix-listen`, which the command line does
//! not accept yet: its options land with the issue that owns them).

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};

use super::{Accepted, Listener, Stream};
use crate::conninfo::Addr;

/// A bound Unix listener.
#[derive(Debug)]
pub struct Unix {
    listener: UnixListener,
    path: Option<PathBuf>,
}

impl Unix {
    /// Binds a Unix stream socket at `path` (which must not exist).
    pub fn bind(path: &Path) -> io::Result<Unix> {
        let listener = UnixListener::bind(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {}: {e}", path.display()),
            )
        })?;
        Ok(Unix {
            listener,
            path: Some(path.to_path_buf()),
        })
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
