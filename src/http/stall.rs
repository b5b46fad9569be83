//! stall: the send timeout of HTTP responses (as nginx's `send_timeout`).
//!
//! [`SendTimeout`] wraps the stream hyper serves. When a write (or flush, or shutdown) cannot
//! go on because the client does not read, a timer starts; any write progress stops it; if it
//! fires first, the write fails with [`io::ErrorKind::TimedOut`] and hyper drops the
//! connection. Only stalled writes count: reads pass straight through and an idle keep-alive
//! connection (nothing to write) is never timed out here (the head timeout covers it).
//!
//! The timer is allocated at the first stall only, so a connection that never stalls carries
//! one null pointer. After a WebSocket upgrade the server takes the stream back out
//! ([`SendTimeout::into_inner`]): the relay runs on the raw stream, at no cost.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A stream whose writes fail with `TimedOut` after `timeout` without progress.
pub struct SendTimeout<IO> {
    io: IO,
    timeout: Duration,
    /// Allocated at the first stall, then reused; `armed` says whether it counts now.
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl<IO> SendTimeout<IO> {
    pub fn new(io: IO, timeout: Duration) -> Self {
        SendTimeout {
            io,
            timeout,
            timer: None,
            armed: false,
        }
    }

    /// The stream, without the timeout.
    pub fn into_inner(self) -> IO {
        self.io
    }

    /// Whether a stall is being timed now.
    #[cfg(test)]
    fn is_armed(&self) -> bool {
        self.armed
    }

    /// Passes on what a write-side operation returned: progress disarms the timer; `Pending`
    /// starts it (if not running) and fails with `TimedOut` once it has run out.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.armed = false;
            return result;
        }
        if !self.armed {
            let deadline = Instant::now() + self.timeout;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.armed = true;
        }
        if let Some(timer) = &mut self.timer {
            ready!(timer.as_mut().poll(cx));
        }
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("client read nothing for {:?}", self.timeout),
        )))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for SendTimeout<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for SendTimeout<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_flush(cx);
        this.watch(cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_shutdown(cx);
        this.watch(cx, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const TIMEOUT: Duration = Duration::from_secs(30);

    /// Bounds `fut` at 100 timeouts (of paused time: no real wait).
    async fn bounded<F: Future>(fut: F) -> F::Output {
        tokio::time::timeout(TIMEOUT * 100, fut)
            .await
            .expect("hung for 100 timeouts")
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_makes_no_progress_fails_after_the_timeout_and_not_before() {
        // A pipe whose reader never reads: writes stall once its 1 KiB buffer is full.
        let (ours, _theirs) = tokio::io::duplex(1024);
        let mut io = SendTimeout::new(ours, TIMEOUT);
        let started = Instant::now();
        let err = bounded(io.write_all(&[0u8; 4096])).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn progress_restarts_the_timer_and_reads_do_not_count() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let mut io = SendTimeout::new(ours, TIMEOUT);
        // The peer drains 512 bytes every TIMEOUT - 1 s: slow, but never stalled that long.
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut buf = [0u8; 512];
            while got < 8192 {
                tokio::time::sleep(TIMEOUT - Duration::from_secs(1)).await;
                got += theirs.read_exact(&mut buf).await.map(|_| 512).unwrap();
            }
            theirs
        });
        bounded(io.write_all(&[1u8; 8192])).await.unwrap();
        assert!(!io.is_armed());
        let mut theirs = reader.await.unwrap();
        // Bytes coming in do not stop a stalled write being timed.
        theirs.write_all(b"more requests").await.unwrap();
        let err = bounded(io.write_all(&[0u8; 4096])).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let mut incoming = [0u8; 13];
        io.read_exact(&mut incoming).await.unwrap();
        assert_eq!(&incoming, b"more requests");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_stream_is_never_timed_out_and_allocates_no_timer() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let mut io = SendTimeout::new(ours, TIMEOUT);
        io.write_all(b"response").await.unwrap();
        io.flush().await.unwrap();
        tokio::time::sleep(TIMEOUT * 10).await;
        assert!(io.timer.is_none() && !io.is_armed());
        theirs.write_all(b"next request").await.unwrap();
        let mut buf = [0u8; 12];
        io.read_exact(&mut buf).await.unwrap();
        io.write_all(b"answer").await.unwrap();
        let mut got = [0u8; 14];
        theirs.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"responseanswer");
        let raw = io.into_inner();
        drop(raw);
    }

    #[tokio::test(start_paused = true)]
    async fn vectored_writes_pass_through_and_are_timed_when_stalled() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let mut io = SendTimeout::new(ours, TIMEOUT);
        let bufs = [io::IoSlice::new(b"HTTP/1.1 "), io::IoSlice::new(b"200 OK")];
        let n = bounded(io.write_vectored(&bufs)).await.unwrap();
        assert!(n > 0);
        let mut got = vec![0u8; n];
        bounded(theirs.read_exact(&mut got)).await.unwrap();
        assert_eq!(got, &b"HTTP/1.1 200 OK"[..n]);
        // The pipe full and never read: the vectored write stalls, and is timed as any other.
        io.write_all(&[0u8; 1024]).await.unwrap();
        let started = Instant::now();
        let err = bounded(io.write_vectored(&bufs)).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), TIMEOUT);
    }

    #[tokio::test]
    async fn the_stream_writes_vectored_as_its_inner_one_does() {
        // hyper chooses how to write (gathered slices or one flattened buffer) from this.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        assert!(tcp.is_write_vectored());
        assert!(SendTimeout::new(tcp, TIMEOUT).is_write_vectored());
    }

    #[tokio::test(start_paused = true)]
    async fn a_flush_or_shutdown_that_cannot_go_on_fails_after_the_timeout() {
        // A buffered writer takes the bytes at once; its flush and its shutdown must first
        // push them into a pipe whose reader never reads (as a TLS stream's records).
        for shutdown in [false, true] {
            let (ours, _theirs) = tokio::io::duplex(1024);
            let mut io = SendTimeout::new(tokio::io::BufWriter::new(ours), TIMEOUT);
            io.write_all(&[0u8; 4096]).await.unwrap();
            let started = Instant::now();
            let err = match shutdown {
                false => bounded(io.flush()).await,
                true => bounded(io.shutdown()).await,
            }
            .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut, "shutdown: {shutdown}");
            assert_eq!(started.elapsed(), TIMEOUT, "shutdown: {shutdown}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_reaches_the_peer_with_every_byte_before_it() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let mut io = SendTimeout::new(tokio::io::BufWriter::new(ours), TIMEOUT);
        io.write_all(b"last response").await.unwrap();
        bounded(io.shutdown()).await.unwrap();
        let mut got = Vec::new();
        bounded(theirs.read_to_end(&mut got)).await.unwrap();
        assert_eq!(got, b"last response");
    }
}
