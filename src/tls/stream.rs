//! stream: a server-side TLS session over rustls' unbuffered API, where this side owns the
//! buffers. Ciphertext is read into a pool buffer that goes back as soon as it holds no pending
//! bytes; records are encrypted into a buffer that goes back once sent. An idle session holds
//! no TLS buffer at all (with `tokio-rustls`, rustls keeps a 4 KiB record buffer per session).
//! Knows nothing of HTTP or WebSocket: bytes in, bytes out.

use std::cell::RefCell;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::server::{ClientHello, ResolvesServerCert, UnbufferedServerConnection};
use rustls::sign::CertifiedKey;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::relay::pool::{Buf, BUF_SIZE};

/// The most plaintext one `poll_write` takes: a 64 KiB WebSocket frame with its header in one
/// go. The next write waits until its ciphertext is sent: that is the backpressure, and the
/// bound on what a client that stops reading costs.
pub const MAX_WRITE: usize = 64 * 1024 + 64;

/// Room per TLS record beyond its plaintext: header (5), TLS 1.2 explicit nonce (8), AEAD
/// tag (16), TLS 1.3 content type (1), rounded up.
const RECORD_OVERHEAD: usize = 32;

/// rustls' largest plaintext fragment.
const MAX_FRAGMENT: usize = 16 * 1024;

/// The first read buffer of a handshake: a ClientHello fits; a half-open handshake holds no
/// more than this (a pool buffer is 64 KiB).
const HANDSHAKE_READ: usize = 4 * 1024;

/// Room asked for before encoding a handshake record or an alert; grown to what rustls says
/// it needs when that is more.
const HANDSHAKE_ROOM: usize = 4 * 1024;

/// Room for the largest TLS record (16 KiB of payload, its header, tag and padding).
const WHOLE_RECORD: usize = MAX_FRAGMENT + 256;

// The records of one whole write fit a pooled buffer (see `BUF_SIZE`).
const _: () = assert!(MAX_WRITE + MAX_WRITE.div_ceil(MAX_FRAGMENT) * RECORD_OVERHEAD <= BUF_SIZE);

/// Ciphertext storage: a pool buffer when it fits, else one of the size needed.
enum Store {
    Pooled(Buf),
    Owned(Vec<u8>),
}

impl Deref for Store {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Store::Pooled(buf) => buf,
            Store::Owned(vec) => vec,
        }
    }
}

impl DerefMut for Store {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            Store::Pooled(buf) => buf,
            Store::Owned(vec) => vec,
        }
    }
}

/// Ciphertext waiting for the socket, `store[pos..end]`; no store when nothing waits.
#[derive(Default)]
struct Outgoing {
    store: Option<Store>,
    pos: usize,
    end: usize,
}

impl Outgoing {
    fn is_empty(&self) -> bool {
        self.pos == self.end
    }

    /// The free space behind the pending bytes, at least `need` bytes of it.
    fn room(&mut self, need: usize) -> &mut [u8] {
        let have = self.store.as_ref().map_or(0, |s| s.len());
        if have - self.end < need {
            // The pending bytes move to the front: what was sent before `pos` needs no room.
            let want = self.end - self.pos + need;
            let mut grown = if want <= BUF_SIZE {
                Store::Pooled(Buf::take())
            } else {
                Store::Owned(vec![0u8; want])
            };
            if let Some(old) = &self.store {
                grown[..self.end - self.pos].copy_from_slice(&old[self.pos..self.end]);
            }
            self.end -= self.pos;
            self.pos = 0;
            self.store = Some(grown);
        }
        match &mut self.store {
            Some(store) => &mut store[self.end..],
            None => &mut [],
        }
    }

    fn release(&mut self) {
        *self = Outgoing::default();
    }

    /// Moves the pending bytes out of a pooled buffer into one of their size, for bytes that
    /// may wait long (held tickets: a client may take its time before its request).
    fn shrink(&mut self) {
        if let Some(Store::Pooled(buf)) = &self.store {
            let pending = buf[self.pos..self.end].to_vec();
            self.end = pending.len();
            self.pos = 0;
            self.store = Some(Store::Owned(pending));
        }
    }
}

/// What a round of rustls' record processing ended with.
enum Event {
    /// Plaintext was handed over (into the reader's buffer or `plain`).
    Data,
    /// More ciphertext is needed from the peer.
    Input,
    /// `n` bytes of plaintext were encrypted into the outgoing buffer.
    Wrote(usize),
    /// The peer sent close_notify: no more plaintext will come.
    Closed,
}

/// What a round should encrypt once the session may send.
#[derive(Clone, Copy)]
enum Outbound<'a> {
    Nothing,
    Data(&'a [u8]),
    CloseNotify,
}

/// A server-side TLS session on `io`, after its handshake.
pub struct TlsStream<IO> {
    io: IO,
    conn: UnbufferedServerConnection,
    /// Ciphertext read and not yet processed, `rx[rx_start..rx_len]`; `None` when there is
    /// none. Processed records only move `rx_start`: the rest is moved to the front only when
    /// the free tail could not take a whole record (moving it after every record made memcpy
    /// half the instructions of a bulk transfer).
    rx: Option<Store>,
    rx_start: usize,
    rx_len: usize,
    /// Decrypted bytes the reader has not taken yet, from `plain_pos`; empty (no allocation)
    /// unless a record was larger than the reader's buffer or a write decrypted ahead.
    plain: Vec<u8>,
    plain_pos: usize,
    tx: Outgoing,
    /// What TLS 1.3 sends once the handshake is over (its session tickets) waits in `tx` for
    /// our first write and goes out with it, one send instead of two: the client does not
    /// wait for tickets. Reads and flushes leave it alone; a write, shutdown or error sends it.
    hold_tx: bool,
    /// close_notify received (rustls reports it once, to whichever side processed it).
    peer_closed: bool,
    close_sent: bool,
    /// A fatal TLS error happened: every later read and write fails.
    failed: bool,
}

impl<IO> fmt::Debug for TlsStream<IO> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("rx_len", &self.rx_len)
            .field("plain", &(self.plain.len() - self.plain_pos))
            .field("tx", &(self.tx.end - self.tx.pos))
            .field("peer_closed", &self.peer_closed)
            .finish_non_exhaustive()
    }
}

/// What the handshake told us that the unbuffered connection does not (rustls 0.23's
/// `UnbufferedServerConnection` has no `server_name()`).
#[derive(Debug, Default)]
pub struct Handshaken {
    /// The client's SNI, as rustls accepted it.
    pub sni: Option<String>,
}

/// Runs the server side of a TLS handshake on `io` with `config` (which must come from
/// [`super::load`]: its certificate resolver records the SNI). Fails on a peer that closes, on
/// garbage (after sending rustls' alert) and on a handshake message larger than a pool buffer.
pub async fn accept<IO>(
    io: IO,
    config: Arc<ServerConfig>,
) -> io::Result<(TlsStream<IO>, Handshaken)>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let conn = UnbufferedServerConnection::new(config).map_err(io::Error::other)?;
    let mut stream = TlsStream {
        io,
        conn,
        rx: None,
        rx_start: 0,
        rx_len: 0,
        plain: Vec::new(),
        plain_pos: 0,
        tx: Outgoing::default(),
        hold_tx: false,
        peer_closed: false,
        close_sent: false,
        failed: false,
    };
    let mut done = Handshaken::default();
    poll_fn(|cx| stream.poll_handshake(cx, &mut done)).await?;
    Ok((stream, done))
}

thread_local! {
    /// The SNI the certificate resolver saw last on this thread: rustls calls it inside
    /// `process_tls_records`, which runs to completion on the thread that polls the handshake.
    static SEEN_SNI: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Wraps the configuration's certificate resolver to note the client's SNI for the handshake
/// that asked (see [`SEEN_SNI`]); resolves as the wrapped one does.
#[derive(Debug)]
pub(super) struct NoteSni(pub(super) Arc<dyn ResolvesServerCert>);

impl ResolvesServerCert for NoteSni {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = client_hello.server_name().map(str::to_owned);
        SEEN_SNI.with(|seen| *seen.borrow_mut() = sni);
        self.0.resolve(client_hello)
    }

    fn only_raw_public_keys(&self) -> bool {
        self.0.only_raw_public_keys()
    }
}

fn tls_error(err: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err)
}

fn failed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the TLS session failed earlier",
    )
}

impl<IO> TlsStream<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    /// The connection, for what the handshake negotiated (peer certificates, version).
    pub fn connection(&self) -> &UnbufferedServerConnection {
        &self.conn
    }

    fn poll_handshake(
        &mut self,
        cx: &mut Context<'_>,
        done: &mut Handshaken,
    ) -> Poll<io::Result<()>> {
        loop {
            SEEN_SNI.with(|seen| seen.borrow_mut().take());
            let event = self.process(None, Outbound::Nothing);
            if let Some(sni) = SEEN_SNI.with(|seen| seen.borrow_mut().take()) {
                done.sni = Some(sni);
            }
            let event = event?;
            // A close_notify right behind the client's Finished ends a handshake that is done:
            // the first read is the end of the stream (rustls honours a close_notify only once
            // application data may flow, so `Closed` never comes while handshaking).
            let done = matches!(event, Event::Input | Event::Data | Event::Closed)
                && !self.conn.is_handshaking();
            // TLS 1.3 ends with the client's Finished: what follows from us is tickets. (TLS
            // 1.2 may end with our own Finished, which the client waits for.)
            if done && self.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
                self.hold_tx = !self.tx.is_empty();
                // Not a pooled 64 KiB buffer per session until the client's request comes.
                self.tx.shrink();
                // A TLS 1.3 client's first request may come with its Finished: decrypted
                // into `plain`, it is read first.
                return Poll::Ready(Ok(()));
            }
            // The client waits for our flight before it sends more.
            ready!(self.poll_send(cx))?;
            if done {
                return Poll::Ready(Ok(()));
            }
            ready!(self.poll_fill(cx))?;
        }
    }

    /// Feeds the ciphertext read so far to rustls until it needs more input, hands over
    /// plaintext (into `dst` while it has room, the rest into `plain`), or encrypts `send`.
    /// Handshake records, tickets and alerts rustls emits on the way go to the outgoing buffer.
    fn process(
        &mut self,
        mut dst: Option<&mut ReadBuf<'_>>,
        send: Outbound<'_>,
    ) -> io::Result<Event> {
        if self.failed {
            return Err(failed_error());
        }
        let mut got = false;
        loop {
            let Self {
                conn,
                rx,
                rx_start,
                rx_len,
                plain,
                tx,
                peer_closed,
                ..
            } = self;
            let incoming: &mut [u8] = match rx {
                Some(buf) => &mut buf[*rx_start..*rx_len],
                None => &mut [],
            };
            let UnbufferedStatus { mut discard, state } = conn.process_tls_records(incoming);
            let state = match state {
                Ok(state) => state,
                Err(err) => {
                    discard_front(rx, rx_start, rx_len, discard);
                    self.fail();
                    return Err(tls_error(err));
                }
            };
            let event = match state {
                ConnectionState::ReadTraffic(mut records) => {
                    let mut stopped = false;
                    loop {
                        // A record that does not fit behind what this read already got stays
                        // in rustls' queue for the next read: split, its rest would be copied
                        // twice more (into `plain`, then out of it).
                        if got
                            && dst.as_ref().is_some_and(|d| {
                                records.peek_len().is_some_and(|n| n.get() > d.remaining())
                            })
                        {
                            stopped = true;
                            break;
                        }
                        let Some(record) = records.next_record() else {
                            break;
                        };
                        let record = record.map_err(tls_error)?;
                        discard += record.discard;
                        let payload = record.payload;
                        // Plaintext is kept back only once the reader's buffer is full (and
                        // `poll_read` hands it over before it calls here), so what fits goes
                        // straight to the reader.
                        let direct = match &mut dst {
                            Some(dst) => payload.len().min(dst.remaining()),
                            None => 0,
                        };
                        if let Some(dst) = &mut dst {
                            dst.put_slice(&payload[..direct]);
                        }
                        plain.extend_from_slice(&payload[direct..]);
                        // A reader whose buffer is now full leaves the rest in rustls' queue:
                        // no record fits behind (the check above).
                        got = true;
                    }
                    (dst.is_some() && read_done(stopped, dst.as_deref())).then_some(Event::Data)
                }
                ConnectionState::EncodeTlsData(mut record) => {
                    let mut need = HANDSHAKE_ROOM;
                    loop {
                        match record.encode(tx.room(need)) {
                            Ok(n) => {
                                tx.end += n;
                                break;
                            }
                            Err(EncodeError::InsufficientSize(size)) => need = size.required_size,
                            Err(err) => return Err(io::Error::other(err)),
                        }
                    }
                    None
                }
                // Our outgoing buffer keeps the records in order: they count as sent here.
                ConnectionState::TransmitTlsData(record) => {
                    record.done();
                    None
                }
                ConnectionState::BlockedHandshake => {
                    Some(if got { Event::Data } else { Event::Input })
                }
                // The peer's close_notify, reported once: the reader's end of the stream. A
                // writer that meets it first may still send (and close): rustls' next state
                // lets it.
                ConnectionState::PeerClosed => {
                    *peer_closed = true;
                    match send {
                        Outbound::Nothing => Some(Event::Closed),
                        _ => None,
                    }
                }
                ConnectionState::WriteTraffic(mut traffic) => match send {
                    Outbound::Nothing => Some(if got { Event::Data } else { Event::Input }),
                    Outbound::Data(data) => {
                        let records = data.len().div_ceil(MAX_FRAGMENT).max(1);
                        let mut need = data.len() + records * RECORD_OVERHEAD;
                        let n = loop {
                            match traffic.encrypt(data, tx.room(need)) {
                                Ok(n) => break n,
                                Err(EncryptError::InsufficientSize(size)) => {
                                    need = size.required_size
                                }
                                Err(err) => {
                                    return Err(io::Error::new(io::ErrorKind::BrokenPipe, err))
                                }
                            }
                        };
                        tx.end += n;
                        Some(Event::Wrote(data.len()))
                    }
                    Outbound::CloseNotify => {
                        let mut need = HANDSHAKE_ROOM;
                        let n = loop {
                            match traffic.queue_close_notify(tx.room(need)) {
                                Ok(n) => break n,
                                Err(EncryptError::InsufficientSize(size)) => {
                                    need = size.required_size
                                }
                                Err(err) => {
                                    return Err(io::Error::new(io::ErrorKind::BrokenPipe, err))
                                }
                            }
                        };
                        tx.end += n;
                        Some(Event::Wrote(0))
                    }
                },
                // Early data is not enabled (`max_early_data_size` is 0). `Closed` (both
                // close_notify gone) is reached by no caller: the reader stops at
                // `peer_closed`, the writer at `close_sent`. A future state rustls adds is an
                // error until this code knows it.
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "unexpected TLS state",
                    ))
                }
            };
            discard_front(rx, rx_start, rx_len, discard);
            if let Some(event) = event {
                return Ok(event);
            }
        }
    }

    /// After a fatal error: rustls has queued an alert for the peer; put it in the outgoing
    /// buffer (sent on a best-effort basis by the caller's next write attempt).
    fn fail(&mut self) {
        self.failed = true;
        let incoming: &mut [u8] = match &mut self.rx {
            Some(buf) => &mut buf[self.rx_start..self.rx_len],
            None => &mut [],
        };
        if let Ok(ConnectionState::EncodeTlsData(mut alert)) =
            self.conn.process_tls_records(incoming).state
        {
            if let Ok(n) = alert.encode(self.tx.room(HANDSHAKE_ROOM)) {
                self.tx.end += n;
            }
        }
        self.rx = None;
        self.rx_start = 0;
        self.rx_len = 0;
    }

    /// Sends the outgoing buffer; releases it once empty.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.tx.is_empty() {
            let Some(store) = &self.tx.store else { break };
            let n =
                ready!(Pin::new(&mut self.io).poll_write(cx, &store[self.tx.pos..self.tx.end]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.tx.pos += n;
        }
        self.tx.release();
        Poll::Ready(Ok(()))
    }

    /// Reads ciphertext from the socket behind what is pending. The buffer is borrowed for the
    /// read and returned to the pool at once when the read would block with nothing pending.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let handshaking = self.conn.is_handshaking();
        let rx = self.rx.get_or_insert_with(|| {
            if handshaking {
                Store::Owned(vec![0u8; HANDSHAKE_READ])
            } else {
                Store::Pooled(Buf::take())
            }
        });
        if self.rx_start > 0 && rx.len() - self.rx_len < WHOLE_RECORD {
            rx.copy_within(self.rx_start..self.rx_len, 0);
            self.rx_len -= self.rx_start;
            self.rx_start = 0;
        }
        if self.rx_len == rx.len() {
            if rx.len() >= BUF_SIZE {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TLS message larger than the read buffer",
                )));
            }
            // A handshake message larger than the first buffer (a long certificate chain).
            let mut grown = vec![0u8; (rx.len() * 4).min(BUF_SIZE)];
            grown[..self.rx_len].copy_from_slice(&rx[..self.rx_len]);
            *rx = Store::Owned(grown);
        }
        let mut read_buf = ReadBuf::new(&mut rx[self.rx_len..]);
        let polled = Pin::new(&mut self.io).poll_read(cx, &mut read_buf);
        let n = read_buf.filled().len();
        self.rx_len += n;
        if self.rx_len == 0 {
            self.rx = None;
        }
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Ready(Ok(())) if n == 0 => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "peer closed connection without sending TLS close_notify",
            ))),
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
        }
    }

    /// Copies pending plaintext into `dst`; frees it once taken.
    fn take_plain(&mut self, dst: &mut ReadBuf<'_>) {
        let n = (self.plain.len() - self.plain_pos).min(dst.remaining());
        dst.put_slice(&self.plain[self.plain_pos..self.plain_pos + n]);
        self.plain_pos += n;
        if self.plain_pos == self.plain.len() {
            self.plain = Vec::new();
            self.plain_pos = 0;
        }
    }
}

/// Drops `n` processed bytes from the front of the received ciphertext; the buffer goes back
/// to the pool when nothing is left.
fn discard_front(rx: &mut Option<Store>, rx_start: &mut usize, rx_len: &mut usize, n: usize) {
    if n == 0 {
        return;
    }
    *rx_start += n;
    if *rx_start == *rx_len {
        *rx = None;
        *rx_start = 0;
        *rx_len = 0;
    }
}

impl<IO> AsyncRead for TlsStream<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        dst: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.plain_pos < this.plain.len() {
            this.take_plain(dst);
            return Poll::Ready(Ok(()));
        }
        if this.peer_closed || dst.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            let event = this.process(Some(dst), Outbound::Nothing);
            // Records rustls answers on its own (a TLS 1.3 key update, an alert) go out now,
            // unless they may wait for our first write (see `hold_tx`; not an alert); a full
            // socket keeps them for the next write or read.
            if event.is_err() {
                this.hold_tx = false;
            }
            let sent = if this.hold_tx {
                Poll::Ready(Ok(()))
            } else {
                this.poll_send(cx)
            };
            let event = event?;
            if let Poll::Ready(Err(err)) = sent {
                return Poll::Ready(Err(err));
            }
            match event {
                // What did not fit waits in `plain` (then `dst` is full) for the next read; the
                // end of the stream reads as nothing.
                Event::Data | Event::Wrote(_) | Event::Closed => return Poll::Ready(Ok(())),
                Event::Input => ready!(this.poll_fill(cx))?,
            }
        }
    }
}

/// Whether a read can return after a batch of records: one did not fit (`stopped`), or the
/// reader's buffer is full (plaintext left in `plain` implies that too). Otherwise the caller
/// turns the loop once more, and rustls' next state hands back the data all the same: this only
/// spares that turn.
fn read_done(stopped: bool, dst: Option<&ReadBuf<'_>>) -> bool {
    stopped || dst.is_some_and(|d| d.remaining() == 0)
}

impl<IO> AsyncWrite for TlsStream<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        src: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.close_sent {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        // New plaintext only once the last is sent (held records excepted: they go out
        // together with it): the outgoing buffer stays bounded.
        if !this.hold_tx {
            ready!(this.poll_send(cx))?;
        }
        if src.is_empty() {
            return Poll::Ready(Ok(0));
        }
        this.hold_tx = false;
        let data = &src[..src.len().min(MAX_WRITE)];
        let n = match this.process(None, Outbound::Data(data))? {
            Event::Wrote(n) => n,
            _ => 0,
        };
        // Start sending at once; what the socket does not take now waits for the next call.
        if let Poll::Ready(Err(err)) = this.poll_send(cx) {
            return Poll::Ready(Err(err));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Held records are not the caller's to flush (hyper flushes before its first read).
        if !this.hold_tx {
            ready!(this.poll_send(cx))?;
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.hold_tx = false;
        if !this.close_sent && !this.failed {
            ready!(this.poll_send(cx))?;
            this.process(None, Outbound::CloseNotify)?;
            this.close_sent = true;
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::TlsConnector;

    /// A certificate for `localhost` and a server configuration serving it, as `load` makes.
    fn server_config() -> (Arc<ServerConfig>, CertificateDer<'static>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        config.cert_resolver = Arc::new(NoteSni(config.cert_resolver.clone()));
        (Arc::new(config), cert.der().clone())
    }

    fn client_config(
        der: &CertificateDer<'static>,
        versions: &[&'static SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// A socket that hands over one byte per read: every record arrives split.
    struct OneByte(TcpStream);

    impl AsyncRead for OneByte {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let mut one = [0u8; 1];
            let mut small = ReadBuf::new(&mut one);
            ready!(Pin::new(&mut self.0).poll_read(cx, &mut small))?;
            buf.put_slice(small.filled());
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for OneByte {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.0).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    /// A socket that counts the writes that sent something.
    struct CountWrites(TcpStream, Arc<AtomicUsize>);

    impl AsyncRead for CountWrites {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for CountWrites {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let polled = Pin::new(&mut self.0).poll_write(cx, buf);
            if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
                self.1.fetch_add(1, Ordering::SeqCst);
            }
            polled
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    async fn bounded<F: std::future::Future>(what: &str, f: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(20), f)
            .await
            .unwrap_or_else(|_| panic!("{what}: not done in 20 s"))
    }

    /// A handshake over real loopback sockets: the server side through `accept` (its socket
    /// wrapped by `wrap`), the client through tokio-rustls.
    async fn connect<IO, W>(
        versions: &[&'static SupportedProtocolVersion],
        wrap: W,
    ) -> (
        TlsStream<IO>,
        Handshaken,
        tokio_rustls::client::TlsStream<TcpStream>,
    )
    where
        IO: AsyncRead + AsyncWrite + Unpin,
        W: FnOnce(TcpStream) -> IO,
    {
        connect_with(|der| client_config(der, versions), wrap).await
    }

    /// `connect` with the client's configuration made by `client` (given the server's
    /// certificate to trust).
    async fn connect_with<IO, W>(
        client: impl FnOnce(&CertificateDer<'static>) -> Arc<ClientConfig>,
        wrap: W,
    ) -> (
        TlsStream<IO>,
        Handshaken,
        tokio_rustls::client::TlsStream<TcpStream>,
    )
    where
        IO: AsyncRead + AsyncWrite + Unpin,
        W: FnOnce(TcpStream) -> IO,
    {
        let (server, der) = server_config();
        let client_config = client(&der);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            TlsConnector::from(client_config)
                .connect(name, tcp)
                .await
                .unwrap()
        };
        let server = async {
            let (tcp, _) = listener.accept().await.unwrap();
            accept(wrap(tcp), server).await.unwrap()
        };
        let ((server, handshaken), client) =
            bounded("handshake", async { tokio::join!(server, client) }).await;
        (server, handshaken, client)
    }

    const BOTH: [&[&SupportedProtocolVersion]; 2] =
        [&[&rustls::version::TLS13], &[&rustls::version::TLS12]];

    fn holds_no_buffer<IO>(stream: &TlsStream<IO>) -> bool {
        stream.rx.is_none() && stream.tx.store.is_none() && stream.plain.capacity() == 0
    }

    #[tokio::test]
    async fn records_split_across_reads_byte_by_byte_are_read_whole() {
        for versions in BOTH {
            let (mut server, handshaken, mut client) = connect(versions, OneByte).await;
            assert_eq!(handshaken.sni.as_deref(), Some("localhost"));
            let message: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
            client.write_all(&message).await.unwrap();
            client.flush().await.unwrap();
            let mut got = vec![0u8; message.len()];
            bounded("the split records", server.read_exact(&mut got))
                .await
                .unwrap();
            assert!(got == message, "{versions:?}: the bytes differ");
        }
    }

    #[tokio::test]
    async fn a_large_write_spanning_many_records_arrives_whole_both_ways() {
        for versions in BOTH {
            let (mut server, _, client) = connect(versions, |tcp| tcp).await;
            let message: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
            let (mut client_read, mut client_write) = tokio::io::split(client);
            let sent = message.clone();
            let writer = tokio::spawn(async move {
                server.write_all(&sent).await.unwrap();
                server.flush().await.unwrap();
                let mut back = vec![0u8; sent.len()];
                server.read_exact(&mut back).await.unwrap();
                back
            });
            let mut got = vec![0u8; message.len()];
            bounded("the large write", client_read.read_exact(&mut got))
                .await
                .unwrap();
            assert!(got == message, "{versions:?}: server to client differs");
            client_write.write_all(&message).await.unwrap();
            client_write.flush().await.unwrap();
            let back = bounded("the large read", writer).await.unwrap();
            assert!(back == message, "{versions:?}: client to server differs");
        }
    }

    #[tokio::test]
    async fn close_notify_ends_reads_cleanly_both_ways() {
        for versions in BOTH {
            // The server closes: the client sees the end of the stream, not an error.
            let (mut server, _, mut client) = connect(versions, |tcp| tcp).await;
            server.write_all(b"last words").await.unwrap();
            server.shutdown().await.unwrap();
            // A second shutdown has nothing more to send (one close_notify is all).
            server.shutdown().await.unwrap();
            let mut got = Vec::new();
            bounded("the client's read to end", client.read_to_end(&mut got))
                .await
                .unwrap();
            assert_eq!(got, b"last words");
            // The client closes: the server reads to the end without error, and may still
            // answer with its own close_notify.
            let (mut server, _, mut client) = connect(versions, |tcp| tcp).await;
            client.write_all(b"bye").await.unwrap();
            client.shutdown().await.unwrap();
            let mut got = Vec::new();
            bounded("the server's read to end", server.read_to_end(&mut got))
                .await
                .unwrap();
            assert_eq!(got, b"bye");
            server.shutdown().await.unwrap();
            // A client that drops the connection without close_notify is an error (a reset
            // when the TLS 1.3 tickets it never read were still in its socket).
            let (mut server, _, client) = connect(versions, |tcp| tcp).await;
            drop(client.into_inner().0);
            let err = bounded("the truncated read", server.read(&mut [0u8; 16]))
                .await
                .unwrap_err();
            assert!(
                matches!(
                    err.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                ),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn garbage_after_the_handshake_is_an_error_and_the_peer_gets_an_alert() {
        for versions in BOTH {
            let (mut server, _, client) = connect(versions, |tcp| tcp).await;
            let (mut tcp, _) = client.into_inner();
            // An application-data record header and bytes that decrypt to nothing.
            let mut garbage = vec![0x17, 0x03, 0x03, 0x00, 0x40];
            garbage.extend_from_slice(&[0xA5; 0x40]);
            tcp.write_all(&garbage).await.unwrap();
            let err = bounded("the server's read", server.read(&mut [0u8; 16]))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
            // rustls' alert went out: an encrypted alert record (content type 21) in TLS 1.2,
            // an application-data one (23) in 1.3.
            let mut record = [0u8; 5];
            bounded("the alert", tcp.read_exact(&mut record))
                .await
                .unwrap();
            assert!(matches!(record[0], 21 | 23), "{record:?}");
            // And the session refuses to go on, but still closes: a shutdown after the
            // failure sends no close_notify and ends the socket.
            assert!(server.write(b"more").await.is_err());
            bounded("the shutdown after the failure", server.shutdown())
                .await
                .unwrap_or_else(|err| panic!("{versions:?}: {err}"));
            let mut rest = Vec::new();
            bounded("the end of the alert", tcp.read_to_end(&mut rest))
                .await
                .unwrap();
            // Whole records (the alert, after TLS 1.3 tickets held until then), then the end.
            let mut at = usize::from(u16::from_be_bytes([record[3], record[4]]));
            while at + 5 <= rest.len() {
                at += 5 + usize::from(u16::from_be_bytes([rest[at + 3], rest[at + 4]]));
            }
            assert_eq!(at, rest.len(), "{versions:?}: a record cut short");
        }
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_holds_back_the_writer_with_bounded_buffers() {
        let (mut server, _, _client) = connect(BOTH[0], |tcp| tcp).await;
        let chunk = vec![0x5Au8; MAX_WRITE];
        let mut accepted = 0u64;
        // Writes until one waits: the client never reads, so the sockets fill and stay full.
        loop {
            match tokio::time::timeout(Duration::from_millis(500), server.write(&chunk)).await {
                Ok(written) => accepted += written.unwrap() as u64,
                Err(_) => break,
            }
            assert!(
                accepted < 64 << 20,
                "{accepted} bytes accepted from a writer to a client that reads nothing"
            );
        }
        let held = server.tx.end - server.tx.pos;
        assert!(
            held <= MAX_WRITE + 5 * RECORD_OVERHEAD,
            "{held} bytes of ciphertext held"
        );
        // A whole write's records were sealed into a pooled buffer, not a fresh allocation.
        assert!(
            matches!(server.tx.store, Some(Store::Pooled(_))),
            "the ciphertext is not in a pooled buffer"
        );
        assert!(server.plain.capacity() == 0 && server.rx.is_none());
    }

    #[tokio::test]
    async fn a_record_that_does_not_fit_behind_a_read_waits_whole_for_the_next_read() {
        for versions in BOTH {
            let (mut server, _, mut client) = connect(versions, |tcp| tcp).await;
            // Three full records.
            let message: Vec<u8> = (0..3 * MAX_FRAGMENT as u32).map(|i| i as u8).collect();
            client.write_all(&message).await.unwrap();
            client.flush().await.unwrap();
            records_arrived(&server, 2).await;
            // A reader with room for one record and a bit: it gets the first record only; the
            // second is not split into our plaintext buffer.
            let mut got = Vec::new();
            let mut buf = vec![0u8; MAX_FRAGMENT + 3_000];
            let n = bounded("the first read", server.read(&mut buf))
                .await
                .unwrap();
            assert_eq!(n, MAX_FRAGMENT, "{versions:?}: the first read");
            assert_eq!(server.plain.capacity(), 0, "{versions:?}: plaintext held");
            got.extend_from_slice(&buf[..n]);
            while got.len() < message.len() {
                let n = bounded("the next read", server.read(&mut buf))
                    .await
                    .unwrap();
                assert_eq!(n, MAX_FRAGMENT, "{versions:?}: a later read");
                got.extend_from_slice(&buf[..n]);
            }
            assert!(got == message, "{versions:?}: the bytes differ");
        }
    }

    #[tokio::test]
    async fn records_that_exactly_fill_a_read_come_in_that_read() {
        for versions in BOTH {
            let (mut server, _, mut client) = connect(versions, |tcp| tcp).await;
            let message: Vec<u8> = (0..3 * MAX_FRAGMENT as u32).map(|i| i as u8).collect();
            client.write_all(&message).await.unwrap();
            client.flush().await.unwrap();
            records_arrived(&server, 2).await;
            // Room for exactly two records: the second fits to the byte, so it is not left for
            // the next read.
            let mut buf = vec![0u8; 2 * MAX_FRAGMENT];
            let n = bounded("the first read", server.read(&mut buf))
                .await
                .unwrap();
            assert_eq!(n, 2 * MAX_FRAGMENT, "{versions:?}: the first read");
            assert!(buf == message[..n], "{versions:?}: the bytes differ");
        }
    }

    #[tokio::test]
    async fn a_flush_sends_what_a_write_left_for_a_full_socket() {
        let (mut server, _, mut client) = connect(BOTH[0], |tcp| tcp).await;
        let chunk = vec![0x5Au8; MAX_WRITE];
        let mut accepted = 0usize;
        // Writes until one waits: the client reads nothing yet, so the last accepted write
        // left ciphertext behind in our buffer.
        loop {
            match tokio::time::timeout(Duration::from_millis(500), server.write(&chunk)).await {
                Ok(written) => accepted += written.unwrap(),
                Err(_) => break,
            }
            assert!(accepted < 64 << 20, "{accepted} bytes accepted");
        }
        assert!(
            server.tx.end > server.tx.pos,
            "nothing left behind to flush"
        );
        // The writer writes no more: only its flush can send the rest.
        let mut got = vec![0u8; accepted];
        let (flushed, read) = bounded("the flush and the client's read", async {
            tokio::join!(server.flush(), client.read_exact(&mut got))
        })
        .await;
        flushed.unwrap();
        read.unwrap();
        assert!(got.iter().all(|&b| b == 0x5A));
        assert_eq!(server.tx.end, server.tx.pos, "ciphertext still held");
    }

    #[tokio::test]
    async fn tls13_tickets_go_out_with_the_first_response_in_one_send() {
        let writes = Arc::new(AtomicUsize::new(0));
        let counted = writes.clone();
        let (mut server, _, mut client) =
            connect(BOTH[0], move |tcp| CountWrites(tcp, counted)).await;
        let after_handshake = writes.load(Ordering::SeqCst);
        // Held in a buffer of their size, not a pooled one.
        assert!(
            matches!(&server.tx.store, Some(Store::Owned(held)) if held.len() < 2048),
            "the held tickets: {:?}",
            server.tx.store.as_ref().map(|s| s.len())
        );
        client.write_all(b"request").await.unwrap();
        client.flush().await.unwrap();
        let mut got = [0u8; 7];
        bounded("the request", server.read_exact(&mut got))
            .await
            .unwrap();
        assert_eq!(&got, b"request");
        // hyper flushes before its first read.
        server.flush().await.unwrap();
        assert_eq!(
            writes.load(Ordering::SeqCst),
            after_handshake,
            "sent while reading the request"
        );
        server.write_all(b"response").await.unwrap();
        assert_eq!(
            writes.load(Ordering::SeqCst),
            after_handshake + 1,
            "the tickets and the response took more than one send"
        );
        // Both arrived: the response, and the tickets before it.
        let mut back = [0u8; 8];
        bounded("the response", client.read_exact(&mut back))
            .await
            .unwrap();
        assert_eq!(&back, b"response");
        assert!(client.get_ref().1.tls13_tickets_received() > 0);
    }

    #[tokio::test]
    async fn an_idle_session_holds_no_tls_buffer() {
        for versions in BOTH {
            let (mut server, _, mut client) = connect(versions, |tcp| tcp).await;
            // After traffic both ways, with more pending than one read takes.
            let message = vec![7u8; 100_000];
            client.write_all(&message).await.unwrap();
            client.flush().await.unwrap();
            let mut got = vec![0u8; message.len()];
            server.read_exact(&mut got).await.unwrap();
            server.write_all(&message).await.unwrap();
            server.flush().await.unwrap();
            client.read_exact(&mut got).await.unwrap();
            // Waiting for the next bytes: the read is pending, and nothing is held.
            let waited =
                tokio::time::timeout(Duration::from_millis(50), server.read(&mut [0u8; 64])).await;
            assert!(waited.is_err(), "{versions:?}: the read did not wait");
            assert!(holds_no_buffer(&server), "{versions:?}: {server:?}");
        }
    }

    /// A relayed frame of 64 KiB with its longest header (14 bytes) is taken by one write, as
    /// `MAX_WRITE` promises: not a short write and the header's last bytes after it.
    #[tokio::test]
    async fn a_64_kib_frame_with_its_header_is_taken_by_one_write() {
        let (mut server, _, mut client) = connect(&[&rustls::version::TLS13], |tcp| tcp).await;
        let frame: Vec<u8> = (0..64 * 1024 + 14u32).map(|i| (i % 251) as u8).collect();
        let mut got = vec![0u8; frame.len()];
        let (wrote, read) = bounded("the frame", async {
            tokio::join!(
                async {
                    // Checked at once: after a short write the reader would wait for ever.
                    let n = server.write(&frame).await.unwrap();
                    assert_eq!(n, frame.len(), "one write takes the whole frame");
                    server.flush().await
                },
                client.read_exact(&mut got)
            )
        })
        .await;
        wrote.unwrap();
        read.unwrap();
        assert!(got == frame, "the bytes differ");
    }

    /// The store grows only when the room behind the pending bytes is short of what is
    /// asked; grown, it keeps the pending bytes (not those already sent) at its front, and
    /// past a pool buffer it is exactly as large as they and the asked room.
    #[test]
    fn a_grown_store_keeps_only_the_pending_bytes_and_the_room_asked() {
        let mut tx = Outgoing::default();
        assert!(tx.room(0).is_empty(), "no store before one is needed");
        assert_eq!(tx.room(10).len(), BUF_SIZE);
        tx.room(6)[..6].copy_from_slice(b"abcdef");
        tx.end = 6;
        tx.pos = 2; // "ab" sent
        let pending = |tx: &Outgoing| tx.store.as_ref().unwrap()[tx.pos..tx.end].to_vec();
        // Exactly the room left: the same store.
        let first = tx.store.as_ref().unwrap().as_ptr();
        assert_eq!(tx.room(BUF_SIZE - 6).len(), BUF_SIZE - 6);
        assert_eq!(tx.store.as_ref().unwrap().as_ptr(), first);
        assert_eq!((tx.pos, tx.end), (2, 6));
        // A byte more: a new store, "cdef" at its front; with the room asked it fits a pool
        // buffer (the two bytes sent need none).
        assert_eq!(tx.room(BUF_SIZE - 5).len(), BUF_SIZE - 4);
        assert_ne!(tx.store.as_ref().unwrap().as_ptr(), first);
        assert_eq!((tx.pos, tx.end), (0, 4));
        assert_eq!(pending(&tx), b"cdef");
        assert_eq!(tx.store.as_ref().unwrap().len(), BUF_SIZE);
        // Past a pool buffer: exactly the pending bytes and the room asked.
        assert_eq!(tx.room(BUF_SIZE).len(), BUF_SIZE);
        assert_eq!(tx.store.as_ref().unwrap().len(), 4 + BUF_SIZE);
        assert_eq!(pending(&tx), b"cdef");
    }

    /// Debug shows what waits each way: plaintext not yet taken, ciphertext not yet sent (not
    /// what was already taken or sent).
    #[tokio::test]
    async fn debug_shows_what_waits_each_way() {
        let (mut server, _, mut client) = connect(&[&rustls::version::TLS12], |tcp| tcp).await;
        client.write_all(&[7u8; 100]).await.unwrap();
        client.flush().await.unwrap();
        let mut ten = [0u8; 10];
        for _ in 0..2 {
            bounded("a read of 10", server.read_exact(&mut ten))
                .await
                .unwrap();
        }
        assert_eq!((server.plain.len(), server.plain_pos), (90, 10));
        server.tx.room(6)[..6].copy_from_slice(b"abcdef");
        server.tx.end += 6;
        server.tx.pos += 2;
        let shown = format!("{server:?}");
        assert!(
            shown.starts_with("TlsStream { ") && shown.contains("plain: 80, tx: 4, "),
            "{shown}"
        );
    }

    /// Waits until `n` whole TLS records are in the server's socket, unread.
    async fn records_arrived(server: &TlsStream<TcpStream>, n: usize) {
        bounded("the client's records", async {
            let mut peeked = vec![0u8; 64 * 1024];
            loop {
                let len = server.io.peek(&mut peeked).await.unwrap();
                let (mut at, mut whole) = (0, 0);
                while at + 5 <= len {
                    at += 5 + usize::from(u16::from_be_bytes([peeked[at + 3], peeked[at + 4]]));
                    if at <= len {
                        whole += 1;
                    }
                }
                if whole >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
    }

    #[tokio::test]
    async fn plaintext_kept_back_is_read_whole_by_a_larger_read() {
        for versions in BOTH {
            let (mut server, _, mut client) = connect(versions, |tcp| tcp).await;
            let record: Vec<u8> = (0..100u8).collect();
            client.write_all(&record).await.unwrap();
            client.flush().await.unwrap();
            let mut got = vec![0u8; 20];
            for part in got.chunks_mut(10) {
                bounded("a read of 10", server.read_exact(part))
                    .await
                    .unwrap();
            }
            let mut large = [0u8; 1000];
            let n = bounded("the read of the rest", server.read(&mut large))
                .await
                .unwrap();
            got.extend_from_slice(&large[..n]);
            assert_eq!(got, record, "{versions:?}");
        }
    }

    /// The client's close_notify on its own, after its data was read: the server's next read
    /// is the end of the stream, not an error (the client's FIN is there too).
    #[tokio::test]
    async fn a_close_notify_after_the_data_is_a_clean_end_of_stream() {
        for versions in BOTH {
            let (mut server, _, mut client) = connect(versions, |tcp| tcp).await;
            client.write_all(b"bye").await.unwrap();
            client.flush().await.unwrap();
            let mut got = [0u8; 3];
            bounded("the data", server.read_exact(&mut got))
                .await
                .unwrap();
            client.shutdown().await.unwrap();
            let n = bounded("the read after close_notify", server.read(&mut [0u8; 16]))
                .await
                .unwrap_or_else(|err| panic!("{versions:?}: {err}"));
            assert_eq!((&got, n), (b"bye", 0), "{versions:?}");
        }
    }

    /// A write that meets the client's close_notify first (it came behind records a short
    /// read left unread) still goes out: the client closed its half only. The reader then
    /// gets the rest of the data and the end of the stream.
    #[tokio::test]
    async fn a_write_that_meets_the_peers_close_notify_first_still_sends() {
        for versions in BOTH {
            let (mut server, _, mut client) = connect(versions, |tcp| tcp).await;
            for part in [&b"one"[..], b"two"] {
                client.write_all(part).await.unwrap();
                client.flush().await.unwrap();
            }
            client.shutdown().await.unwrap();
            records_arrived(&server, 3).await;
            let mut one = [0u8; 3];
            bounded("the first record", server.read_exact(&mut one))
                .await
                .unwrap();
            // "two" and the close_notify are still ciphertext in the server's buffer.
            assert!(server.rx_len > server.rx_start, "{versions:?}");
            bounded("the late write", server.write_all(b"late"))
                .await
                .unwrap_or_else(|err| panic!("{versions:?}: {err}"));
            bounded("the shutdown", server.shutdown()).await.unwrap();
            let mut rest = Vec::new();
            bounded("the rest", server.read_to_end(&mut rest))
                .await
                .unwrap();
            let mut back = Vec::new();
            bounded("the client's read", client.read_to_end(&mut back))
                .await
                .unwrap();
            assert_eq!(
                (&one[..], &rest[..], &back[..]),
                (&b"one"[..], &b"two"[..], &b"late"[..])
            );
        }
    }

    /// A client whose close_notify comes in the same read as its Finished: the handshake is
    /// done (the client's socket stays open, so nothing else could end it), and the first
    /// read is the end of the stream.
    #[tokio::test]
    async fn a_close_notify_behind_the_clients_finished_completes_the_handshake() {
        for versions in BOTH {
            let (config, der) = server_config();
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let (tcp, _) = listener.accept().await.unwrap();
                let (mut stream, _) = accept(tcp, config).await?;
                let mut got = Vec::new();
                stream.read_to_end(&mut got).await.map(|_| got)
            });
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let mut conn =
                rustls::ClientConnection::new(client_config(&der, versions), name).unwrap();
            let mut out = Vec::new();
            conn.write_tls(&mut out).unwrap();
            tcp.write_all(&out).await.unwrap();
            // The server's flight, until the client has its own to send (its Finished).
            let mut buf = vec![0u8; 64 * 1024];
            while !conn.wants_write() {
                let n = bounded("the server's flight", tcp.read(&mut buf))
                    .await
                    .unwrap();
                assert!(n > 0, "{versions:?}: the server closed");
                conn.read_tls(&mut &buf[..n]).unwrap();
                conn.process_new_packets().unwrap();
            }
            conn.send_close_notify();
            out.clear();
            while conn.wants_write() {
                conn.write_tls(&mut out).unwrap();
            }
            // One write: the Finished and the close_notify arrive together.
            tcp.write_all(&out).await.unwrap();
            let got = bounded("the server's handshake and read", server)
                .await
                .unwrap()
                .unwrap_or_else(|err| panic!("{versions:?}: {err}"));
            assert!(got.is_empty(), "{versions:?}");
            drop(tcp);
        }
    }

    /// A ClientHello larger than the first read buffer (4 KiB) grows the buffer; only one
    /// larger than a pool buffer is refused.
    #[tokio::test]
    async fn a_client_hello_larger_than_the_first_read_buffer_is_read_whole() {
        for versions in BOTH {
            let alpn = |der: &CertificateDer<'static>| {
                let mut config = Arc::unwrap_or_clone(client_config(der, versions));
                // 30 names of 200 bytes: a ClientHello of about 6.5 KiB.
                config.alpn_protocols = (0..30u8)
                    .map(|i| [&[b'a' + i][..], &[b'x'; 199]].concat())
                    .collect();
                Arc::new(config)
            };
            let (mut server, _, mut client) = connect_with(alpn, |tcp| tcp).await;
            client.write_all(b"after").await.unwrap();
            client.flush().await.unwrap();
            let mut got = [0u8; 5];
            bounded("the data", server.read_exact(&mut got))
                .await
                .unwrap();
            assert_eq!(&got, b"after", "{versions:?}");
        }
    }
}
