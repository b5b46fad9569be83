//! sniff: looks at a connection's first byte to tell TLS from plain HTTP and from the Flash
//! socket-policy request of the seed, without consuming it (peeked, or read and replayed by
//! [`Rewind`]); and answers that policy request (the one answer given before any TLS or HTTP).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tracing::debug;

/// What a connection speaks, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// A TLS handshake record (0x16).
    Tls,
    /// `<`, which cannot start an HTTP request: a Flash socket-policy request, or nothing we
    /// speak ([`check_policy_request`] tells).
    FlashPolicy,
    /// Anything else: plain HTTP (the HTTP layer judges it).
    Http,
}

/// Classifies from the first byte(s); `first` must not be empty.
pub fn classify(first: &[u8]) -> Protocol {
    match first.first() {
        Some(0x16) => Protocol::Tls,
        Some(b'<') => Protocol::FlashPolicy,
        _ => Protocol::Http,
    }
}

/// What Flash Player sends to ask for the socket policy, NUL included.
pub const POLICY_REQUEST: &[u8] = b"<policy-file-request/>\0";

/// The answer: any domain may connect to any port (as the original websockify), NUL-terminated.
pub const POLICY_RESPONSE: &[u8] =
    b"<cross-domain-policy><allow-access-from domain=\"*\" to-ports=\"*\" /></cross-domain-policy>\0";

/// How the bytes read so far compare with [`POLICY_REQUEST`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyCheck {
    /// A proper prefix so far: read more.
    Incomplete,
    /// Exactly the request.
    Complete,
    /// Something else (or more than the request).
    Wrong,
}

/// Compares the first bytes of a connection with the policy request.
pub fn check_policy_request(got: &[u8]) -> PolicyCheck {
    if got.len() > POLICY_REQUEST.len() || !POLICY_REQUEST.starts_with(got) {
        PolicyCheck::Wrong
    } else if got.len() == POLICY_REQUEST.len() {
        PolicyCheck::Complete
    } else {
        PolicyCheck::Incomplete
    }
}

/// The seed's Flash socket policy: reads at most the request's 23 bytes within `timeout`; the
/// exact request gets the policy document, anything else is dropped. Either way the connection
/// then closes.
pub async fn answer_flash_policy<S>(mut stream: S, timeout: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let read_request = async {
        let mut got = [0u8; POLICY_REQUEST.len()];
        let mut n = 0;
        loop {
            match check_policy_request(&got[..n]) {
                PolicyCheck::Complete => return true,
                PolicyCheck::Wrong => return false,
                PolicyCheck::Incomplete => {}
            }
            match stream.read(&mut got[n..]).await {
                Ok(0) | Err(_) => return false,
                Ok(k) => n += k,
            }
        }
    };
    match tokio::time::timeout(timeout, read_request).await {
        Ok(true) => {}
        Ok(false) => return debug!("dropped: starts with '<' but is no Flash policy request"),
        Err(_) => return debug!("dropped: no complete Flash policy request within {timeout:?}"),
    }
    let write = async {
        stream.write_all(POLICY_RESPONSE).await?;
        stream.shutdown().await
    };
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(())) => debug!("Flash policy request answered"),
        Ok(Err(err)) => debug!("Flash policy answer failed: {err}"),
        Err(_) => debug!("Flash policy answer not taken within {timeout:?}"),
    }
}

/// What the first read asks for: hyper's first read buffer, so that the HTTP side never needs
/// more reads for a head than it would have needed by itself.
pub const FIRST_READ: usize = 8 * 1024;

/// A stream whose first bytes were read to classify it, and are replayed before the stream's
/// own (hyper's `common/io/rewind.rs`). Reading them instead of peeking them spares a syscall
/// per connection where nothing else needs them left in the socket (no TLS handshake reads
/// them: no certificate is configured).
#[derive(Debug)]
pub struct Rewind<S> {
    /// The bytes read and not yet replayed; unallocated once replayed.
    prefix: Vec<u8>,
    /// How many of `prefix` were replayed.
    replayed: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> Rewind<S> {
    /// Reads once (up to [`FIRST_READ`] bytes, as many as have arrived); `None` at end of
    /// stream before any byte.
    pub async fn read_first(mut inner: S) -> io::Result<Option<Rewind<S>>> {
        let mut prefix = Vec::with_capacity(FIRST_READ);
        if inner.read_buf(&mut prefix).await? == 0 {
            return Ok(None);
        }
        Ok(Some(Rewind {
            prefix,
            replayed: 0,
            inner,
        }))
    }
}

impl<S> Rewind<S> {
    /// The bytes not yet replayed (all of the first read, until something reads).
    pub fn prefix(&self) -> &[u8] {
        &self.prefix[self.replayed..]
    }

    /// The stream, and what was read past it: the bytes not yet replayed, then `leftover`
    /// (bytes that whoever read from this stream read past what it used).
    pub fn into_inner(self, leftover: Bytes) -> (S, Bytes) {
        let rest = &self.prefix[self.replayed..];
        if rest.is_empty() {
            return (self.inner, leftover);
        }
        let mut all = Vec::with_capacity(rest.len() + leftover.len());
        all.extend_from_slice(rest);
        all.extend_from_slice(&leftover);
        (self.inner, Bytes::from(all))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let rest = &this.prefix[this.replayed..];
        if rest.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        this.replayed += n;
        if this.replayed == this.prefix.len() {
            this.prefix = Vec::new();
            this.replayed = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_record_byte_means_tls() {
        assert_eq!(classify(&[0x16, 0x03, 0x01]), Protocol::Tls);
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Protocol::Http);
    }

    #[test]
    fn angle_bracket_means_flash_policy() {
        assert_eq!(classify(b"<policy-file-request/>\0"), Protocol::FlashPolicy);
        assert_eq!(classify(b"<"), Protocol::FlashPolicy);
    }

    #[test]
    fn policy_request_is_checked_byte_for_byte() {
        assert_eq!(check_policy_request(b""), PolicyCheck::Incomplete);
        assert_eq!(check_policy_request(b"<policy"), PolicyCheck::Incomplete);
        assert_eq!(
            check_policy_request(b"<policy-file-request/>"),
            PolicyCheck::Incomplete
        );
        assert_eq!(check_policy_request(POLICY_REQUEST), PolicyCheck::Complete);
        assert_eq!(check_policy_request(b"<polite"), PolicyCheck::Wrong);
        assert_eq!(check_policy_request(b"<html>"), PolicyCheck::Wrong);
        assert_eq!(
            check_policy_request(b"<policy-file-request/>\0x"),
            PolicyCheck::Wrong
        );
        assert_eq!(
            check_policy_request(b"<policy-file-request/>\n"),
            PolicyCheck::Wrong
        );
    }

    #[test]
    fn policy_response_is_the_permissive_document_with_a_nul() {
        assert!(POLICY_RESPONSE.starts_with(b"<cross-domain-policy>"));
        assert!(POLICY_RESPONSE.ends_with(b"</cross-domain-policy>\0"));
        assert_eq!(POLICY_REQUEST.len(), 23);
    }

    #[tokio::test]
    async fn rewind_replays_the_first_read_then_the_stream() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"GET / HT").await.unwrap();
        let mut stream = Rewind::read_first(server).await.unwrap().unwrap();
        assert_eq!(stream.prefix(), b"GET / HT");
        client.write_all(b"TP/1.1\r\n").await.unwrap();
        // A small read takes part of the prefix; the rest comes before the stream's bytes.
        let mut got = [0u8; 3];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"GET");
        let mut rest = [0u8; 13];
        stream.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b" / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn rewind_hands_back_unreplayed_bytes_before_the_leftover() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"abcdef").await.unwrap();
        let mut stream = Rewind::read_first(server).await.unwrap().unwrap();
        let mut got = [0u8; 2];
        stream.read_exact(&mut got).await.unwrap();
        let (_, leftover) = stream.into_inner(Bytes::from_static(b"XY"));
        assert_eq!(&leftover[..], b"cdefXY");
    }

    #[tokio::test]
    async fn rewind_is_none_at_end_of_stream() {
        let (client, server) = tokio::io::duplex(64);
        drop(client);
        assert!(Rewind::read_first(server).await.unwrap().is_none());
    }

    async fn bounded<F: std::future::Future>(fut: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .expect("hung for 10 s")
    }

    /// hyper writes its answers through the wrapper: writes (plain and vectored), flushes and
    /// the shutdown all reach the stream underneath (here a buffered one, which holds what is
    /// written until flushed), and the wrapper writes vectored as its stream does.
    #[tokio::test]
    async fn rewind_passes_writes_flushes_and_the_shutdown_to_the_stream() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"GET").await.unwrap();
        let buffered = tokio::io::BufWriter::new(server);
        let mut stream = Rewind::read_first(buffered).await.unwrap().unwrap();
        assert!(stream.is_write_vectored());
        stream.write_all(b"HTTP/1.1 ").await.unwrap();
        let status = b"101 Switching";
        let bufs = [
            io::IoSlice::new(&status[..4]),
            io::IoSlice::new(&status[4..]),
        ];
        let n = stream.write_vectored(&bufs).await.unwrap();
        assert!(n > 0);
        stream.write_all(&status[n..]).await.unwrap();
        // Held by the buffered writer until the flush.
        stream.flush().await.unwrap();
        let mut got = [0u8; 22];
        bounded(client.read_exact(&mut got)).await.unwrap();
        assert_eq!(&got, b"HTTP/1.1 101 Switching");
        // The shutdown reaches the client while the stream is still held.
        stream.shutdown().await.unwrap();
        let mut rest = Vec::new();
        bounded(client.read_to_end(&mut rest)).await.unwrap();
        assert!(rest.is_empty());
    }
}
