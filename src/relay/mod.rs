//! relay: moves bytes between a WebSocket client and a target stream, both ways, until one
//! side ends; then does the close handshake. Knows nothing of HTTP, TLS or tokens.
//!
//! One task drives both directions through a hand-written poll loop, so the client's writer has
//! a single owner (data frames, pongs and the close frame never interleave mid-frame) without
//! locks. Memory per connection stays bounded whatever the peers do:
//! - a direction holds a pooled buffer only while bytes are in flight; idle, it holds none;
//! - a direction reads only after its previous bytes were fully written (backpressure);
//! - payload is forwarded piece by piece as it arrives: a message is never held whole.
//!
//! Two things reach a session from outside ([`Outside`]): the `--heartbeat` timer and the
//! server's "going away" (SIGTERM). The poll loop looks at both once per wake-up; a ping joins
//! the control frames and a close ends the loop, so both go out only between data frames.

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf as _, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::error::{Error, Kind, Side};
use crate::observe::{Direction, Ended, Observer, Report};
use crate::ws::base64::{self, Base64Decoder};
use crate::ws::close::{self, close_code};
use crate::ws::frame::{self, opcode, DataKind, Decoder, Item};
use crate::ws::utf8::Utf8Validator;
pub use crate::ws::{Mode, Violation};
use pool::{Buf, BUF_SIZE, READ_SIZE};

pub mod pool;

/// How long the close handshake may take: flushing what is left, waiting for the client's
/// close frame after ours, shutting sockets down. A peer that stalls is dropped after it.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Client bytes land this far into a buffer: base64 decodes in place, and completing a quartet
/// carried from the previous read needs 2 bytes of room in front (see `Base64Decoder`).
const CLIENT_READ_OFFSET: usize = 4;

/// Pongs waiting for a client that does not read: past this we stop reading its pings.
const CONTROL_BACKLOG_LIMIT: usize = 4096;

/// The largest target read sent in base64 mode: its encoding must fit one buffer.
const BASE64_READ_MAX: usize = (BUF_SIZE - frame::MAX_SERVER_HEADER) / 4 * 3;

/// What may interrupt a session from outside, looked at between frames.
pub struct Outside<'a> {
    /// `--heartbeat`: a ping this often. A client that for two whole intervals sends nothing at
    /// all and takes no data (a dead peer's socket buffer fills) is closed (1001) at the next
    /// tick: between 2 and 3 intervals after the last sign of life.
    pub heartbeat: Option<Duration>,
    /// Set when the server is going away (drain): the session is then closed with 1001. A
    /// flag, not a future: it costs the hot path one load per wake-up. Whoever sets it must
    /// poll the relay again (the session's task does: it is that task that sees the drain).
    pub going_away: &'a AtomicBool,
}

/// Never set: for sessions nothing interrupts.
static NEVER: AtomicBool = AtomicBool::new(false);

impl Outside<'static> {
    /// Nothing from outside: no heartbeat, never going away.
    pub fn none() -> Self {
        Outside {
            heartbeat: None,
            going_away: &NEVER,
        }
    }
}

/// Relays between `client` (an upgraded WebSocket; `leftover` is what the HTTP layer read past
/// the request head) and `target`, then closes the WebSocket properly. Both streams are left
/// shut down for writing; the caller drops them. `observer` sees the payload both ways, if
/// it asks to (see [`crate::observe`]); `&mut ()` watches nothing.
pub async fn run<C, T, O>(
    client: &mut C,
    target: &mut T,
    leftover: Bytes,
    mode: Mode,
    observer: &mut O,
) -> Report
where
    C: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
    O: Observer,
{
    run_with(client, target, leftover, mode, observer, Outside::none()).await
}

/// [`run`], with a heartbeat and a way to be told the server is going away.
pub async fn run_with<C, T, O>(
    client: &mut C,
    target: &mut T,
    leftover: Bytes,
    mode: Mode,
    observer: &mut O,
    outside: Outside<'_>,
) -> Report
where
    C: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
    O: Observer,
{
    let mut relay = Relay {
        client,
        target,
        mode,
        watch_bytes: observer.wants_bytes(),
        observer,
        leftover,
        decoder: Decoder::new(),
        utf8: Utf8Validator::new(),
        b64: Base64Decoder::new(),
        up: None,
        target_flush: false,
        down: None,
        control: Vec::new(),
        control_pos: 0,
        client_flush: false,
        client_to_target: 0,
        target_to_client: 0,
        heartbeat: outside
            .heartbeat
            .map(|every| Box::new(Heartbeat::new(every))),
        heard: false,
        going_away: outside.going_away,
    };
    let ended = poll_fn(|cx| relay.poll_open(cx)).await;
    // Boxed: the close handshake's state is only needed at the end; inline, it would sit in
    // every idle connection's task.
    let ended = Box::pin(relay.close(ended)).await;
    Report {
        client_to_target: relay.client_to_target,
        target_to_client: relay.target_to_client,
        ended,
    }
}

/// A frame for the client in a pooled buffer: `buf[pos..end]` is still to be written.
struct OutgoingFrame {
    buf: Buf,
    /// Where the frame (or the data) starts; `pos > start` means writing has begun.
    start: usize,
    pos: usize,
    end: usize,
}

/// Payload ranges of one client read that were separated by frame headers: handed to one
/// vectored write as they lie, rather than moved together first.
const MAX_SEGMENTS: usize = 8;

#[derive(Default)]
struct Segments {
    ranges: [(usize, usize); MAX_SEGMENTS],
    /// Ranges `first..len` are still to be written.
    first: usize,
    len: usize,
}

impl Segments {
    /// Adds `data[start..end]`; joins it to the last range when adjacent, and past
    /// `MAX_SEGMENTS` ranges moves it behind the last one (many tiny frames in one read).
    fn push(&mut self, data: &mut [u8], start: usize, end: usize) {
        if start == end {
            return;
        }
        if self.len > 0 {
            let last = &mut self.ranges[self.len - 1];
            if last.1 == start {
                last.1 = end;
                return;
            }
            if self.len == MAX_SEGMENTS {
                data.copy_within(start..end, last.1);
                last.1 += end - start;
                return;
            }
        }
        self.ranges[self.len] = (start, end);
        self.len += 1;
    }

    /// Takes back the last range if it ends at `end`.
    fn pop_last_ending_at(&mut self, end: usize) -> Option<(usize, usize)> {
        if self.len > self.first && self.ranges[self.len - 1].1 == end {
            self.len -= 1;
            Some(self.ranges[self.len])
        } else {
            None
        }
    }

    fn total(&self) -> usize {
        self.ranges[self.first..self.len]
            .iter()
            .map(|(s, e)| e - s)
            .sum()
    }

    fn is_empty(&self) -> bool {
        self.first == self.len
    }

    /// Marks `n` bytes as written.
    fn advance(&mut self, mut n: usize) {
        while n > 0 && self.first < self.len {
            let range = &mut self.ranges[self.first];
            let left = range.1 - range.0;
            if n >= left {
                n -= left;
                self.first += 1;
            } else {
                range.0 += n;
                n = 0;
            }
        }
    }
}

/// Client payload waiting to be written to the target.
struct Outgoing {
    buf: Buf,
    segments: Segments,
    /// `buf[start..end]`: the first part of a frame whose rest fits right behind it, held back
    /// until the rest arrives (read in there), so that the target gets such a frame's payload
    /// in one write, as it was sent. Other frames stream.
    held: Option<(usize, usize)>,
}

/// `--heartbeat`'s state, boxed: sessions without a heartbeat carry one pointer, not a timer.
struct Heartbeat {
    timer: Pin<Box<Sleep>>,
    every: Duration,
    /// Ticks in a row with nothing heard from the client.
    silent_ticks: u8,
}

impl Heartbeat {
    fn new(every: Duration) -> Heartbeat {
        Heartbeat {
            timer: Box::pin(tokio::time::sleep(every)),
            every,
            silent_ticks: 0,
        }
    }
}

/// Ticks in a row without a byte from the client after which it is taken for dead.
const SILENT_TICKS_LIMIT: u8 = 2;

/// An empty ping, as the reference sends.
const PING: [u8; 2] = [0x80 | opcode::PING, 0];

struct Relay<'a, C, T, O> {
    client: &'a mut C,
    target: &'a mut T,
    mode: Mode,
    /// Asked once: whether the observer looks at bytes at all.
    watch_bytes: bool,
    observer: &'a mut O,
    /// Client bytes the HTTP layer read past the request head; decoded before any read.
    leftover: Bytes,

    // client → target
    decoder: Decoder,
    utf8: Utf8Validator,
    b64: Base64Decoder,
    up: Option<Outgoing>,
    target_flush: bool,

    // target → client
    down: Option<OutgoingFrame>,
    /// Serialized control frames (pongs, then the close) for the client.
    control: Vec<u8>,
    control_pos: usize,
    client_flush: bool,

    client_to_target: u64,
    target_to_client: u64,

    heartbeat: Option<Box<Heartbeat>>,
    /// Set by every client read and every data write the client accepted; the heartbeat looks
    /// at it and clears it.
    heard: bool,
    going_away: &'a AtomicBool,
}

impl<C, T, O> Relay<'_, C, T, O>
where
    C: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
    O: Observer,
{
    /// Whether client bytes are waiting to be written to the target.
    fn up_busy(&self) -> bool {
        self.up.as_ref().is_some_and(|up| !up.segments.is_empty())
    }

    /// Relays until something ends the session. Returns Pending only when every step that
    /// could make progress is waiting on I/O (and so has registered a wake-up).
    fn poll_open(&mut self, cx: &mut Context<'_>) -> Poll<Ended> {
        if self.going_away.load(Ordering::Relaxed) {
            return Poll::Ready(Ended::Failed(Error::going_away()));
        }
        if let Some(ended) = self.poll_heartbeat(cx) {
            return Poll::Ready(ended);
        }
        loop {
            let mut progress = match self.poll_client_out(cx) {
                Ok(progress) => progress,
                Err(err) => return Poll::Ready(Ended::Failed(err)),
            };
            match self.poll_target_out(cx) {
                Ok(p) => progress |= p,
                Err(err) => return Poll::Ready(Ended::Failed(err)),
            }
            if !self.up_busy() && self.control.len() - self.control_pos < CONTROL_BACKLOG_LIMIT {
                if let Poll::Ready(ended) = self.poll_client_in(cx) {
                    if let Some(ended) = ended {
                        return Poll::Ready(ended);
                    }
                    progress = true;
                }
            }
            if self.down.is_none() {
                if let Poll::Ready(ended) = self.poll_target_in(cx) {
                    if let Some(ended) = ended {
                        return Poll::Ready(ended);
                    }
                    progress = true;
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }

    /// On a heartbeat tick: ends the session if the client has been silent too long, else
    /// queues a ping with the control frames (written between data frames, never inside one).
    /// A client we stopped reading (its payload waits for the target) is not silent, nor one
    /// that takes data.
    fn poll_heartbeat(&mut self, cx: &mut Context<'_>) -> Option<Ended> {
        let heartbeat = self.heartbeat.as_mut()?;
        if heartbeat.timer.as_mut().poll(cx).is_pending() {
            return None;
        }
        let up_busy = self.up.as_ref().is_some_and(|up| !up.segments.is_empty());
        if self.heard || up_busy {
            heartbeat.silent_ticks = 0;
        } else {
            heartbeat.silent_ticks += 1;
        }
        self.heard = false;
        if heartbeat.silent_ticks >= SILENT_TICKS_LIMIT {
            return Some(Ended::Failed(Error::new(
                Side::Client,
                Kind::Timeout,
                "nothing from the client for two heartbeats",
            )));
        }
        // A ping still unwritten means the client does not read: one is enough.
        if self.control.is_empty() {
            self.control.extend_from_slice(&PING);
        }
        // From now, not from the missed deadline: a stalled task does not get a burst of pings.
        let every = heartbeat.every;
        heartbeat.timer.as_mut().reset(Instant::now() + every);
        // Registers the wake-up for the new deadline.
        let _ = heartbeat.timer.as_mut().poll(cx);
        None
    }

    /// Writes pending frames to the client: a data frame already begun first (frames must not
    /// interleave), then control frames, then the next data frame. Returns whether it wrote.
    fn poll_client_out(&mut self, cx: &mut Context<'_>) -> Result<bool, Error> {
        let mut progress = false;
        loop {
            let control_waiting = self.control_pos < self.control.len();
            let data_first = match &self.down {
                Some(down) => down.pos > down.start || !control_waiting,
                None => false,
            };
            let bytes = if data_first {
                match &self.down {
                    Some(down) => &down.buf[down.pos..down.end],
                    None => break,
                }
            } else if control_waiting {
                &self.control[self.control_pos..]
            } else {
                break;
            };
            match Pin::new(&mut *self.client).poll_write(cx, bytes) {
                Poll::Ready(Ok(0)) => {
                    return Err(Error::io(
                        Side::Client,
                        "writing to client",
                        io::ErrorKind::WriteZero.into(),
                    ))
                }
                Poll::Ready(Ok(n)) => {
                    progress = true;
                    self.client_flush = true;
                    if data_first {
                        // The client takes data: alive, whether or not it answers pings (one
                        // behind a long download reads them late).
                        self.heard = true;
                        if let Some(down) = &mut self.down {
                            down.pos += n;
                            let complete = down.pos == down.end;
                            if complete {
                                self.down = None;
                            }
                            if self.watch_bytes {
                                self.observer.sent(Direction::TargetToClient, complete);
                            }
                        }
                    } else {
                        self.control_pos += n;
                        if self.control_pos == self.control.len() {
                            // Freed, not kept: an idle session (pinged every heartbeat) holds
                            // no buffer.
                            self.control = Vec::new();
                            self.control_pos = 0;
                        }
                    }
                }
                Poll::Ready(Err(err)) => {
                    return Err(Error::io(Side::Client, "writing to client", err))
                }
                Poll::Pending => return Ok(progress),
            }
        }
        if self.client_flush {
            match Pin::new(&mut *self.client).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.client_flush = false,
                Poll::Ready(Err(err)) => {
                    return Err(Error::io(Side::Client, "flushing to client", err))
                }
                Poll::Pending => {}
            }
        }
        Ok(progress)
    }

    /// Writes pending client data to the target. Returns whether it wrote.
    fn poll_target_out(&mut self, cx: &mut Context<'_>) -> Result<bool, Error> {
        let mut progress = false;
        while let Some(up) = &mut self.up {
            if up.segments.is_empty() {
                break;
            }
            let mut slices = [IoSlice::new(&[]); MAX_SEGMENTS];
            let ranges = &up.segments.ranges[up.segments.first..up.segments.len];
            for (slice, (start, end)) in slices.iter_mut().zip(ranges) {
                *slice = IoSlice::new(&up.buf[*start..*end]);
            }
            let slices = &slices[..ranges.len()];
            match Pin::new(&mut *self.target).poll_write_vectored(cx, slices) {
                Poll::Ready(Ok(0)) => {
                    return Err(Error::io(
                        Side::Target,
                        "writing to target",
                        io::ErrorKind::WriteZero.into(),
                    ))
                }
                Poll::Ready(Ok(n)) => {
                    progress = true;
                    self.target_flush = true;
                    up.segments.advance(n);
                    let complete = up.segments.is_empty();
                    if complete && up.held.is_none() {
                        self.up = None;
                    }
                    if self.watch_bytes {
                        self.observer.sent(Direction::ClientToTarget, complete);
                    }
                }
                Poll::Ready(Err(err)) => {
                    return Err(Error::io(Side::Target, "writing to target", err))
                }
                Poll::Pending => return Ok(progress),
            }
        }
        if self.target_flush {
            match Pin::new(&mut *self.target).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.target_flush = false,
                Poll::Ready(Err(err)) => {
                    return Err(Error::io(Side::Target, "flushing to target", err))
                }
                Poll::Pending => {}
            }
        }
        Ok(progress)
    }

    /// Reads and decodes one chunk from the client. Ready(Some) when the session ends.
    fn poll_client_in(&mut self, cx: &mut Context<'_>) -> Poll<Option<Ended>> {
        // Continue a held frame in its own buffer, right behind its first part; else borrow one.
        let (mut buf, held) = match self.up.take() {
            Some(Outgoing {
                buf,
                held: Some(held),
                ..
            }) => (buf, Some(held)),
            _ => (Buf::take(), None),
        };
        let at = held.map_or(CLIENT_READ_OFFSET, |(_, end)| end);
        let n = if !self.leftover.is_empty() {
            self.heard = true;
            let n = self.leftover.len().min(BUF_SIZE - at);
            buf[at..at + n].copy_from_slice(&self.leftover[..n]);
            self.leftover.advance(n);
            if self.leftover.is_empty() {
                // Let go of the HTTP layer's buffer.
                self.leftover = Bytes::new();
            }
            n
        } else {
            let mut read_buf = ReadBuf::new(&mut buf[at..]);
            match Pin::new(&mut *self.client).poll_read(cx, &mut read_buf) {
                Poll::Pending => {
                    if held.is_some() {
                        self.up = Some(Outgoing {
                            buf,
                            segments: Segments::default(),
                            held,
                        });
                    }
                    // Otherwise the buffer goes back to the pool: an idle connection holds none.
                    return Poll::Pending;
                }
                Poll::Ready(Err(err)) => {
                    return Poll::Ready(Some(Ended::Failed(Error::io(
                        Side::Client,
                        "reading from client",
                        err,
                    ))))
                }
                Poll::Ready(Ok(())) => read_buf.filled().len(),
            }
        };
        self.heard = true;
        if n == 0 {
            return Poll::Ready(Some(Ended::Failed(Error::new(
                Side::Client,
                Kind::Closed,
                "client closed the connection without a close frame",
            ))));
        }
        Poll::Ready(self.decode_client(buf, at, at + n, held))
    }

    /// Decodes client bytes `buf[at..end]` (behind a held frame part, if any): payload is
    /// unmasked (and base64-decoded) in place and gathered for one write to the target; pings
    /// get pongs.
    fn decode_client(
        &mut self,
        mut buf: Buf,
        at: usize,
        end: usize,
        held: Option<(usize, usize)>,
    ) -> Option<Ended> {
        let data = &mut buf[..end];
        let mut pos = at;
        let mut segments = Segments::default();
        if let Some((start, held_end)) = held {
            segments.push(data, start, held_end);
        }
        // Base64 output is packed from 0, leaving the decoder the room it needs in front of its
        // input; it becomes one segment at the end.
        let mut base64_out = 0;
        let mut ended = None;
        loop {
            let item = match self.decoder.next(data, &mut pos) {
                Ok(item) => item,
                Err(violation) => {
                    ended = Some(Ended::Failed(violation.into()));
                    break;
                }
            };
            match item {
                Item::NeedMore => break,
                Item::Payload {
                    start,
                    end,
                    kind,
                    end_of_message,
                } => {
                    if let Err(err) = self.take_payload(
                        data,
                        (start, end),
                        kind,
                        end_of_message,
                        &mut segments,
                        &mut base64_out,
                    ) {
                        ended = Some(Ended::Failed(err));
                        break;
                    }
                }
                Item::Control(control) => match control.opcode {
                    opcode::PING => {
                        frame::push_server_frame(&mut self.control, opcode::PONG, control.payload())
                    }
                    opcode::CLOSE => {
                        ended = Some(match close::parse_close(control.payload()) {
                            Ok(info) => Ended::ClientClosed(info),
                            Err(violation) => Ended::Failed(violation.into()),
                        });
                        break;
                    }
                    _ => {} // unsolicited pongs are allowed and ignored
                },
            }
        }
        if self.mode == Mode::Base64 {
            segments.push(data, 0, base64_out);
        }
        // Hold back the first part of a frame whose rest fits right behind it in this buffer;
        // anything else (a big frame, or one that starts too deep in the buffer) streams, so
        // holding never costs a copy.
        let mut held = None;
        if ended.is_none() && self.mode == Mode::Binary {
            if let Some((_, remaining)) = self.decoder.data_frame_progress() {
                if remaining > 0 && end as u64 + remaining <= BUF_SIZE as u64 {
                    // Not counted yet: it is, with the rest of its frame.
                    held = segments.pop_last_ending_at(end);
                }
            }
        }
        if !segments.is_empty() || held.is_some() {
            self.client_to_target += segments.total() as u64;
            if self.watch_bytes {
                for (start, end) in &segments.ranges[segments.first..segments.len] {
                    self.observer
                        .bytes(Direction::ClientToTarget, &buf[*start..*end]);
                }
            }
            self.up = Some(Outgoing {
                buf,
                segments,
                held,
            });
        }
        ended
    }

    /// Takes one piece of message payload, `data[start..end]`, into the output: as a segment
    /// (binary mode) or decoded to `data[*base64_out..]` (base64 mode).
    fn take_payload(
        &mut self,
        data: &mut [u8],
        (start, end): (usize, usize),
        kind: DataKind,
        end_of_message: bool,
        segments: &mut Segments,
        base64_out: &mut usize,
    ) -> Result<(), Error> {
        match self.mode {
            Mode::Binary => {
                if kind == DataKind::Text {
                    let valid = self.utf8.feed(&data[start..end]).and_then(|()| {
                        if end_of_message {
                            self.utf8.finish()
                        } else {
                            Ok(())
                        }
                    });
                    if valid.is_err() {
                        return Err(Violation::new(
                            close_code::INVALID_PAYLOAD,
                            "text message is not UTF-8",
                        )
                        .into());
                    }
                }
                segments.push(data, start, end);
            }
            Mode::Base64 => {
                let invalid = |_| {
                    Error::from(Violation::new(
                        close_code::INVALID_PAYLOAD,
                        "message is not valid base64",
                    ))
                };
                *base64_out = self
                    .b64
                    .decode_in_place(data, start, end, *base64_out)
                    .map_err(invalid)?;
                if end_of_message {
                    self.b64.finish().map_err(invalid)?;
                }
            }
        }
        Ok(())
    }

    /// Reads one chunk from the target and frames it for the client.
    fn poll_target_in(&mut self, cx: &mut Context<'_>) -> Poll<Option<Ended>> {
        const HEAD: usize = frame::MAX_SERVER_HEADER;
        let mut buf = Buf::take();
        let limit = match self.mode {
            Mode::Binary => HEAD + READ_SIZE,
            Mode::Base64 => HEAD + BASE64_READ_MAX,
        };
        let mut read_buf = ReadBuf::new(&mut buf[HEAD..limit]);
        let n = match Pin::new(&mut *self.target).poll_read(cx, &mut read_buf) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(err)) => {
                return Poll::Ready(Some(Ended::Failed(Error::io(
                    Side::Target,
                    "reading from target",
                    err,
                ))))
            }
            Poll::Ready(Ok(())) => read_buf.filled().len(),
        };
        if n == 0 {
            return Poll::Ready(Some(Ended::TargetClosed));
        }
        self.target_to_client += n as u64;
        if self.watch_bytes {
            self.observer
                .bytes(Direction::TargetToClient, &buf[HEAD..HEAD + n]);
        }
        let (buf, opcode, len) = match self.mode {
            Mode::Binary => (buf, opcode::BINARY, n),
            Mode::Base64 => {
                let mut encoded = Buf::take();
                let len = base64::encode(&buf[HEAD..HEAD + n], &mut encoded[HEAD..]);
                (encoded, opcode::TEXT, len)
            }
        };
        let mut buf = buf;
        let header_len = frame::write_server_header(&mut buf[..HEAD], opcode, len);
        self.down = Some(OutgoingFrame {
            buf,
            start: HEAD - header_len,
            pos: HEAD - header_len,
            end: HEAD + len,
        });
        Poll::Ready(None)
    }

    /// Writes every pending frame to the client.
    async fn drain_client(&mut self) -> Result<(), Error> {
        poll_fn(|cx| loop {
            let progress = self.poll_client_out(cx)?;
            if self.down.is_none() && self.control.is_empty() && !self.client_flush {
                return Poll::Ready(Ok(()));
            }
            if !progress {
                return Poll::Pending;
            }
        })
        .await
    }

    /// Writes the client's pending payload to the target.
    async fn drain_target(&mut self) -> Result<(), Error> {
        poll_fn(|cx| loop {
            let progress = self.poll_target_out(cx)?;
            if !self.up_busy() && !self.target_flush {
                return Poll::Ready(Ok(()));
            }
            if !progress {
                return Poll::Pending;
            }
        })
        .await
    }

    /// Ends the session as `ended` says: deliver what must be delivered, send the close frame,
    /// wait (bounded) for the client's, and shut both streams down. The client's side and the
    /// target's side are each bounded by `CLOSE_TIMEOUT`, and the client's comes first: a slow
    /// target never delays the client's close handshake.
    async fn close(&mut self, ended: Ended) -> Ended {
        let plan = ClosePlan::for_end(&ended);
        // A data frame not yet begun is dropped when the client will not read it.
        if !plan.deliver_to_client && matches!(&self.down, Some(down) if down.pos == down.start) {
            self.down = None;
        }
        if !plan.deliver_to_target {
            self.up = None;
        }
        let client = async {
            if let Some((code, reason)) = &plan.close_frame {
                if self.drain_client().await.is_ok() {
                    frame::push_close_frame(&mut self.control, *code, reason);
                    if self.drain_client().await.is_ok() && plan.wait_for_reply {
                        let leftover = std::mem::take(&mut self.leftover);
                        let decoder = std::mem::take(&mut self.decoder);
                        await_client_close(self.client, decoder, leftover).await;
                    }
                }
                let _ = self.client.shutdown().await;
            }
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, client).await;
        let target = async {
            if plan.deliver_to_target {
                let _ = self.drain_target().await;
            }
            let _ = self.target.shutdown().await;
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, target).await;
        ended
    }
}

/// What closing a session involves, by how it ended.
struct ClosePlan {
    /// The close frame for the client (code, reason); None when the client is gone.
    close_frame: Option<(u16, String)>,
    /// Target bytes already read still go to the client (it is the target that ended).
    deliver_to_client: bool,
    /// Client payload already read still goes to the target (the client closed properly).
    deliver_to_target: bool,
    /// We start the close handshake, so we wait for the client's close frame.
    wait_for_reply: bool,
}

impl ClosePlan {
    fn for_end(ended: &Ended) -> ClosePlan {
        let ours = |code, reason| ClosePlan {
            close_frame: Some((code, reason)),
            deliver_to_client: true,
            deliver_to_target: false,
            wait_for_reply: true,
        };
        match ended {
            Ended::ClientClosed(info) => ClosePlan {
                close_frame: Some((info.code.unwrap_or(close_code::NORMAL), info.reason.clone())),
                deliver_to_client: false,
                deliver_to_target: true,
                wait_for_reply: false,
            },
            Ended::TargetClosed => {
                let closed = Error::target_closed();
                ours(closed.close_code(), closed.close_reason().to_owned())
            }
            Ended::Failed(err) => match (err.side, err.kind) {
                // The client broke the protocol: tell it why, and do not wait for it.
                (Side::Client, Kind::Protocol(_)) => ClosePlan {
                    close_frame: Some((err.close_code(), err.close_reason().to_owned())),
                    deliver_to_client: false,
                    deliver_to_target: false,
                    wait_for_reply: false,
                },
                // Silent past the heartbeat's bound: told (it may only be deaf one way), but
                // not waited for.
                (Side::Client, Kind::Timeout) => ClosePlan {
                    close_frame: Some((err.close_code(), err.close_reason().to_owned())),
                    deliver_to_client: false,
                    deliver_to_target: false,
                    wait_for_reply: false,
                },
                // The client is gone: nobody to tell.
                (Side::Client, _) => ClosePlan {
                    close_frame: None,
                    deliver_to_client: false,
                    deliver_to_target: false,
                    wait_for_reply: false,
                },
                (Side::Target, _) | (Side::Internal, _) => {
                    ours(err.close_code(), err.close_reason().to_owned())
                }
            },
        }
    }
}

/// After our close frame: reads (and discards) client frames until the client's close frame,
/// end of stream, or a protocol error. The caller bounds the time.
async fn await_client_close<C>(client: &mut C, mut decoder: Decoder, leftover: Bytes)
where
    C: AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut pending = leftover;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = if !pending.is_empty() {
            let n = pending.len().min(buf.len());
            buf[..n].copy_from_slice(&pending[..n]);
            pending.advance(n);
            n
        } else {
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            }
        };
        let mut pos = 0;
        loop {
            match decoder.next(&mut buf[..n], &mut pos) {
                Ok(Item::NeedMore) => break,
                Ok(Item::Control(control)) if control.opcode == opcode::CLOSE => return,
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending_bytes(data: &[u8], segments: &Segments) -> Vec<u8> {
        segments.ranges[segments.first..segments.len]
            .iter()
            .flat_map(|(s, e)| data[*s..*e].to_vec())
            .collect()
    }

    #[test]
    fn segments_join_adjacent_ranges_and_pack_past_the_limit() {
        let mut data: Vec<u8> = (0..=255u8).collect();
        let mut segments = Segments::default();
        segments.push(&mut data, 2, 4);
        segments.push(&mut data, 4, 6); // adjacent: joined
        segments.push(&mut data, 6, 6); // empty: ignored
        assert_eq!(segments.len, 1);
        let mut expected: Vec<u8> = (2..6).collect();
        for i in 0..12u8 {
            let start = 10 + 10 * i as usize;
            segments.push(&mut data, start, start + 3);
            expected.extend(start as u8..start as u8 + 3);
        }
        assert_eq!(segments.len, MAX_SEGMENTS);
        assert_eq!(pending_bytes(&data, &segments), expected);
        assert_eq!(segments.total(), expected.len());
    }

    #[test]
    fn segments_advance_across_ranges() {
        let mut data: Vec<u8> = (0..100u8).collect();
        let mut segments = Segments::default();
        segments.push(&mut data, 0, 10);
        segments.push(&mut data, 20, 30);
        segments.advance(4);
        assert_eq!(segments.total(), 16);
        segments.advance(10);
        assert_eq!(
            pending_bytes(&data, &segments),
            (24..30).collect::<Vec<u8>>()
        );
        segments.advance(6);
        assert!(segments.is_empty());
    }

    /// Collects what it is shown, per direction.
    #[derive(Default)]
    struct Recorder {
        wants: bool,
        up: Vec<u8>,
        down: Vec<u8>,
        calls: usize,
    }

    impl Observer for Recorder {
        fn wants_bytes(&self) -> bool {
            self.wants
        }

        fn bytes(&mut self, direction: Direction, data: &[u8]) {
            self.calls += 1;
            match direction {
                Direction::ClientToTarget => self.up.extend_from_slice(data),
                Direction::TargetToClient => self.down.extend_from_slice(data),
            }
        }
    }

    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [7, 1, 3, 9];
        let mut out = vec![first];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        let mut body = payload.to_vec();
        frame::apply_mask(&mut body, mask, 0);
        out.extend_from_slice(&body);
        out
    }

    /// One session over in-memory streams: the client sends `frames` then a close after the
    /// target's bytes came back; the target sends `from_target` and reads until EOF.
    async fn session(mode: Mode, frames: Vec<u8>, from_target: &[u8], observer: &mut Recorder) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, mut proxy_client) = tokio::io::duplex(1 << 16);
        let (mut target, mut proxy_target) = tokio::io::duplex(1 << 16);
        let from_target = from_target.to_vec();
        let from_target_len = from_target.len() as u64;
        let peers = async move {
            // Split in two writes: the proxy sees the frames across reads.
            let (a, b) = frames.split_at(frames.len() / 2);
            client.write_all(a).await.unwrap();
            client.write_all(b).await.unwrap();
            target.write_all(&from_target).await.unwrap();
            let mut got = vec![0u8; 2 + from_target.len() * 2];
            let mut n = 0;
            while n < 2 {
                n += client.read(&mut got[n..]).await.unwrap();
            }
            client
                .write_all(&masked(0x88, &[0x03, 0xE8]))
                .await
                .unwrap();
            let mut rest = Vec::new();
            let _ = client.read_to_end(&mut rest).await;
            let mut at_target = Vec::new();
            let _ = target.read_to_end(&mut at_target).await;
            at_target
        };
        let relay = run(
            &mut proxy_client,
            &mut proxy_target,
            Bytes::new(),
            mode,
            observer,
        );
        // The relay shuts both streams down at the end: the peers then read EOF.
        let (at_target, report) = tokio::join!(peers, relay);
        assert!(
            matches!(report.ended, Ended::ClientClosed(_)),
            "{}",
            report.ended
        );
        assert_eq!(report.client_to_target, at_target.len() as u64);
        assert_eq!(report.target_to_client, from_target_len);
    }

    #[tokio::test]
    async fn an_observer_sees_every_payload_byte_each_way_as_relayed() {
        let mut frames = masked(0x82, b"ab");
        frames.extend(masked(0x01, b"cd"));
        frames.extend(masked(0x89, b"ping"));
        frames.extend(masked(0x80, b"ef"));
        let mut recorder = Recorder {
            wants: true,
            ..Recorder::default()
        };
        session(Mode::Binary, frames, b"xyz", &mut recorder).await;
        assert_eq!(recorder.up, b"abcdef");
        assert_eq!(recorder.down, b"xyz");
    }

    #[tokio::test]
    async fn an_observer_sees_base64_payload_decoded() {
        let mut frames = masked(0x81, b"aGVs");
        frames.extend(masked(0x81, b"bG8="));
        let mut recorder = Recorder {
            wants: true,
            ..Recorder::default()
        };
        session(Mode::Base64, frames, b"hi", &mut recorder).await;
        assert_eq!(recorder.up, b"hello");
        assert_eq!(recorder.down, b"hi");
    }

    #[tokio::test]
    async fn an_observer_that_does_not_want_bytes_is_never_called() {
        let mut recorder = Recorder::default();
        session(Mode::Binary, masked(0x82, b"ab"), b"xyz", &mut recorder).await;
        assert_eq!(recorder.calls, 0);
    }

    #[test]
    fn segments_give_back_only_a_pending_range_ending_there() {
        let mut data = vec![0u8; 64];
        let mut segments = Segments::default();
        assert_eq!(segments.pop_last_ending_at(0), None);
        segments.push(&mut data, 4, 10);
        segments.push(&mut data, 20, 30);
        assert_eq!(segments.pop_last_ending_at(29), None);
        assert_eq!(segments.pop_last_ending_at(30), Some((20, 30)));
        assert_eq!(segments.len, 1);
        segments.advance(6);
        // Written already: not pending any more.
        assert_eq!(segments.pop_last_ending_at(10), None);
    }

    // A relay between two in-memory pipes, run as its own task, with the test playing client
    // and target. The tests run on paused time: it advances only when every task waits, so a
    // timeout here means "nothing more happens", never "too slow", and the heartbeat and the
    // close timeout cost no real time.

    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    struct Live {
        client: DuplexStream,
        target: DuplexStream,
        going_away: Arc<AtomicBool>,
        relay: tokio::task::JoinHandle<(Report, Recorder)>,
    }

    /// Starts a relay; `client_cap` and `target_cap` are what each pipe buffers per direction
    /// (a small one is a peer that reads slowly). The relay task first runs when the test
    /// awaits something that waits: bytes written right after `start` are there at its first
    /// read.
    fn start(
        mode: Mode,
        client_cap: usize,
        target_cap: usize,
        leftover: Vec<u8>,
        heartbeat: Option<Duration>,
    ) -> Live {
        let (client, mut proxy_client) = tokio::io::duplex(client_cap);
        let (target, mut proxy_target) = tokio::io::duplex(target_cap);
        let going_away = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&going_away);
        let relay = tokio::spawn(async move {
            let mut recorder = Recorder {
                wants: true,
                ..Recorder::default()
            };
            let outside = Outside {
                heartbeat,
                going_away: &flag,
            };
            let report = run_with(
                &mut proxy_client,
                &mut proxy_target,
                Bytes::from(leftover),
                mode,
                &mut recorder,
                outside,
            )
            .await;
            (report, recorder)
        });
        Live {
            client,
            target,
            going_away,
            relay,
        }
    }

    /// Fails the test when `step` cannot complete (on paused time: when everything waits).
    async fn within<F: Future>(what: &str, step: F) -> F::Output {
        match tokio::time::timeout(Duration::from_secs(3600), step).await {
            Ok(out) => out,
            Err(_) => panic!("stalled: {what}"),
        }
    }

    /// Whether `stream` has nothing to read once every task waits.
    async fn nothing_to_read(stream: &mut DuplexStream) -> bool {
        let mut byte = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(1), stream.read(&mut byte))
            .await
            .is_err()
    }

    /// Lets every task run until all of them wait.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    /// One server frame: (first byte, payload).
    async fn read_frame(client: &mut DuplexStream) -> (u8, Vec<u8>) {
        within("a frame for the client", async {
            let mut head = [0u8; 2];
            client.read_exact(&mut head).await.expect("a frame header");
            assert_eq!(head[1] & 0x80, 0, "a server frame is not masked");
            let len = match head[1] {
                126 => {
                    let mut n = [0u8; 2];
                    client.read_exact(&mut n).await.expect("a 16-bit length");
                    u16::from_be_bytes(n) as usize
                }
                127 => {
                    let mut n = [0u8; 8];
                    client.read_exact(&mut n).await.expect("a 64-bit length");
                    u64::from_be_bytes(n) as usize
                }
                n => n as usize,
            };
            let mut payload = vec![0u8; len];
            client.read_exact(&mut payload).await.expect("the payload");
            (head[0], payload)
        })
        .await
    }

    /// Reads a close frame and returns its code.
    async fn read_close(client: &mut DuplexStream) -> u16 {
        let (first, payload) = read_frame(client).await;
        assert_eq!(first, 0x88, "a close frame, got {first:#x} {payload:?}");
        u16::from_be_bytes([payload[0], payload[1]])
    }

    async fn read_eof(stream: &mut DuplexStream) {
        let mut rest = Vec::new();
        within("end of stream", stream.read_to_end(&mut rest))
            .await
            .unwrap();
        assert!(rest.is_empty(), "{} bytes before the end", rest.len());
    }

    /// The client closes (1000) and reads the echo; the relay's report and what it observed.
    async fn close_from_client(mut live: Live) -> (Report, Recorder, Live) {
        live.client
            .write_all(&masked(0x88, &[0x03, 0xE8]))
            .await
            .unwrap();
        loop {
            let (first, _) = read_frame(&mut live.client).await;
            if first == 0x88 {
                break;
            }
        }
        let (report, recorder) = within("the relay's end", &mut live.relay).await.unwrap();
        (report, recorder, live)
    }

    /// `len` bytes of a pattern that shows a byte out of place.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_target_read_fills_one_frame_as_large_as_a_buffer_allows() {
        use ::base64::Engine as _;
        // Binary: a 64 KiB message a target echoes comes back in one frame.
        let sent = pattern(64 * 1024 + 100);
        let mut live = start(Mode::Binary, 1 << 18, 1 << 18, Vec::new(), None);
        live.target.write_all(&sent).await.unwrap();
        let (first, one) = read_frame(&mut live.client).await;
        assert_eq!((first, one.len()), (0x82, 64 * 1024));
        let (_, two) = read_frame(&mut live.client).await;
        assert_eq!([one, two].concat(), sent);
        let (report, recorder, _) = close_from_client(live).await;
        assert_eq!(report.target_to_client, sent.len() as u64);
        assert_eq!(recorder.down, sent);

        // Base64: the largest read whose encoding still fits one buffer (behind the header),
        // in whole 3-byte groups (no padding inside the stream).
        let room = BUF_SIZE - frame::MAX_SERVER_HEADER;
        let sent = pattern(100_000);
        let mut live = start(Mode::Base64, 1 << 18, 1 << 18, Vec::new(), None);
        live.target.write_all(&sent).await.unwrap();
        let mut got = Vec::new();
        let mut first_len = None;
        while got.len() < sent.len() {
            let (first, text) = read_frame(&mut live.client).await;
            assert_eq!(first, 0x81);
            let decoded = ::base64::engine::general_purpose::STANDARD
                .decode(&text)
                .unwrap();
            first_len.get_or_insert(decoded.len());
            got.extend(decoded);
        }
        assert_eq!(got, sent);
        let n = first_len.unwrap_or(0);
        assert_eq!(n % 3, 0, "{n}");
        assert!(base64::encoded_len(n) <= room, "{n}");
        assert!(base64::encoded_len(n + 3) > room, "{n}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_bigger_than_a_buffer_streams_before_its_end_arrives() {
        let payload = pattern(200_000);
        let frame_bytes = masked(0x82, &payload);
        let header = frame_bytes.len() - payload.len();
        let mut live = start(Mode::Binary, 1 << 20, 1 << 20, Vec::new(), None);
        live.client
            .write_all(&frame_bytes[..header + 1000])
            .await
            .unwrap();
        let mut first = vec![0u8; 1000];
        within("the first part", live.target.read_exact(&mut first))
            .await
            .unwrap();
        assert_eq!(first, payload[..1000]);
        live.client
            .write_all(&frame_bytes[header + 1000..])
            .await
            .unwrap();
        let mut rest = vec![0u8; payload.len() - 1000];
        within("the rest", live.target.read_exact(&mut rest))
            .await
            .unwrap();
        assert_eq!(rest, payload[1000..]);
        let (report, recorder, _) = close_from_client(live).await;
        assert_eq!(report.client_to_target, payload.len() as u64);
        assert_eq!(recorder.up, payload);
    }

    /// A small frame that trickles in reaches the target in one write, even behind a frame
    /// already relayed from the same read; the first part is held, not lost.
    #[tokio::test(start_paused = true)]
    async fn a_small_frame_sent_in_pieces_reaches_the_target_whole() {
        let small = masked(0x82, b"0123456789");
        let payload = pattern(1000);
        let frame_bytes = masked(0x82, &payload);
        let cut = frame_bytes.len() - 500;
        let mut live = start(Mode::Binary, 1 << 16, 1 << 16, Vec::new(), None);
        live.client
            .write_all(&[&small[..], &frame_bytes[..cut]].concat())
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = within("the small frame", live.target.read(&mut buf))
            .await
            .unwrap();
        assert_eq!(&buf[..n], b"0123456789");
        assert!(
            nothing_to_read(&mut live.target).await,
            "the first part of an unfinished small frame was written"
        );
        live.client.write_all(&frame_bytes[cut..]).await.unwrap();
        let n = within("the whole frame", live.target.read(&mut buf))
            .await
            .unwrap();
        assert_eq!(&buf[..n], &payload[..], "not in one piece");
        let (report, _, _) = close_from_client(live).await;
        assert_eq!(report.client_to_target, 1010);
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_read_past_the_upgrade_are_relayed_even_beyond_a_buffer() {
        let payload = pattern(100_000);
        let leftover = [masked(0x82, &payload), masked(0x82, b"tail")].concat();
        let mut live = start(Mode::Binary, 1 << 16, 1 << 18, leftover, None);
        let mut got = vec![0u8; payload.len() + 4];
        within("the leftover", live.target.read_exact(&mut got))
            .await
            .unwrap();
        assert_eq!(got, [&payload[..], b"tail"].concat());
        let (report, _, _) = close_from_client(live).await;
        assert_eq!(report.client_to_target, got.len() as u64);
    }

    #[tokio::test(start_paused = true)]
    async fn binary_messages_are_not_checked_as_utf8_but_text_messages_are() {
        let mut live = start(Mode::Binary, 1 << 16, 1 << 16, Vec::new(), None);
        live.client
            .write_all(&masked(0x82, &[0xFF, 0xFE]))
            .await
            .unwrap();
        let mut got = [0u8; 2];
        within("binary bytes", live.target.read_exact(&mut got))
            .await
            .unwrap();
        assert_eq!(got, [0xFF, 0xFE]);
        live.client.write_all(&masked(0x81, &[0xFF])).await.unwrap();
        assert_eq!(read_close(&mut live.client).await, 1007);
    }

    /// Pongs go out between data frames: before one not yet begun, never inside one begun.
    #[tokio::test(start_paused = true)]
    async fn a_pong_goes_before_a_data_frame_not_yet_begun_but_never_inside_one() {
        let mut live = start(Mode::Binary, 1 << 16, 1 << 16, Vec::new(), None);
        live.client.write_all(&masked(0x89, b"p1")).await.unwrap();
        live.target.write_all(b"hello").await.unwrap();
        assert_eq!(read_frame(&mut live.client).await, (0x8A, b"p1".to_vec()));
        assert_eq!(
            read_frame(&mut live.client).await,
            (0x82, b"hello".to_vec())
        );

        // A client pipe of 256 bytes: the relay stops inside the 10,000-byte frame.
        let sent = pattern(10_000);
        let mut live = start(Mode::Binary, 256, 1 << 16, Vec::new(), None);
        live.target.write_all(&sent).await.unwrap();
        let mut head = [0u8; 4];
        within("a frame header", live.client.read_exact(&mut head))
            .await
            .unwrap();
        assert_eq!(head, [0x82, 126, 0x27, 0x10]);
        let mut got = vec![0u8; 100];
        within("a frame's start", live.client.read_exact(&mut got))
            .await
            .unwrap();
        live.client.write_all(&masked(0x89, b"p2")).await.unwrap();
        settle().await;
        let mut rest = vec![0u8; sent.len() - 100];
        within("the frame's rest", live.client.read_exact(&mut rest))
            .await
            .unwrap();
        got.extend(rest);
        assert!(got == sent, "the data frame came back altered");
        assert_eq!(read_frame(&mut live.client).await, (0x8A, b"p2".to_vec()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_pinged_then_closed_with_1001_after_two_silent_intervals() {
        let every = Duration::from_secs(10);
        let t0 = Instant::now();
        let mut live = start(Mode::Binary, 1 << 16, 1 << 16, Vec::new(), Some(every));
        assert_eq!(read_frame(&mut live.client).await, (0x89, Vec::new()));
        let pinged = t0.elapsed();
        assert!(pinged >= every && pinged < 2 * every, "{pinged:?}");
        assert_eq!(read_close(&mut live.client).await, 1001);
        let closed = t0.elapsed();
        assert!(closed >= 2 * every && closed < 3 * every, "{closed:?}");
        let (report, _) = within("the relay's end", live.relay).await.unwrap();
        assert!(
            matches!(&report.ended, Ended::Failed(e) if matches!(e.kind, Kind::Timeout)),
            "{}",
            report.ended
        );
    }

    /// Not silent: a client whose payload waits for a target that does not read (we stopped
    /// reading it), and one that answers our pings.
    #[tokio::test(start_paused = true)]
    async fn a_client_is_not_silent_while_its_payload_waits_or_while_it_answers() {
        let every = Duration::from_secs(10);
        let payload = pattern(200_000);
        let mut live = start(Mode::Binary, 1 << 20, 1024, Vec::new(), Some(every));
        live.client
            .write_all(&masked(0x82, &payload))
            .await
            .unwrap();
        tokio::time::sleep(10 * every).await;
        assert!(!live.relay.is_finished(), "closed while its payload waited");
        let mut got = vec![0u8; payload.len()];
        within("the payload", live.target.read_exact(&mut got))
            .await
            .unwrap();
        assert!(got == payload);
        for _ in 0..10 {
            tokio::time::sleep(every / 2).await;
            live.client.write_all(&masked(0x8A, b"")).await.unwrap();
        }
        assert!(!live.relay.is_finished(), "closed while it answered");
        let (report, _, _) = close_from_client(live).await;
        assert!(matches!(report.ended, Ended::ClientClosed(_)));
    }

    /// A client that sends pings and never reads: the relay stops reading it once 4 KiB of
    /// pongs wait, and answers every ping it read once the client reads again.
    #[tokio::test(start_paused = true)]
    async fn pongs_for_a_client_that_does_not_read_stop_its_reading_at_the_limit() {
        // 64-byte pipes: 32 two-byte pongs fill the client's, 10 six-byte pings the relay's.
        let mut live = start(Mode::Binary, 64, 64, Vec::new(), None);
        let ping = masked(0x89, b"");
        let mut accepted = 0;
        loop {
            let write = live.client.write_all(&ping);
            if tokio::time::timeout(Duration::from_secs(1), write)
                .await
                .is_err()
            {
                break;
            }
            accepted += 1;
            settle().await;
        }
        // Read while fewer than the limit's worth of pongs wait; then the pipe's 10 pings.
        assert_eq!(accepted, 32 + CONTROL_BACKLOG_LIMIT / 2 + 10);
        for _ in 0..accepted {
            assert_eq!(read_frame(&mut live.client).await, (0x8A, Vec::new()));
        }
    }

    /// The limit counts the pong bytes not yet written: a pong half written counts by half.
    #[tokio::test(start_paused = true)]
    async fn the_pong_backlog_counts_only_bytes_not_yet_written() {
        let mut live = start(Mode::Binary, 64, 64, Vec::new(), None);
        // A 127-byte pong: 64 bytes fill the client's pipe, 63 wait.
        live.client
            .write_all(&masked(0x89, &[b'x'; 125]))
            .await
            .unwrap();
        settle().await;
        let ping = masked(0x89, b"");
        let mut accepted = 0;
        loop {
            let write = live.client.write_all(&ping);
            if tokio::time::timeout(Duration::from_secs(1), write)
                .await
                .is_err()
            {
                break;
            }
            accepted += 1;
            settle().await;
        }
        // Two-byte pongs on top of the 63 bytes until the limit, then the pipe's 10 pings.
        assert_eq!(accepted, (CONTROL_BACKLOG_LIMIT - 63).div_ceil(2) + 10);
    }

    /// After a protocol error the client is told why and its stream ends at once: nothing
    /// waits for a close frame from a client that broke the protocol.
    #[tokio::test(start_paused = true)]
    async fn a_protocol_error_gets_1002_and_the_end_of_the_stream_at_once() {
        let t0 = Instant::now();
        let mut live = start(Mode::Binary, 1 << 16, 1 << 16, Vec::new(), None);
        live.client.write_all(&[0x82, 0x00]).await.unwrap(); // unmasked
        assert_eq!(read_close(&mut live.client).await, 1002);
        read_eof(&mut live.client).await;
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    }

    /// When the target ends, the client gets its last bytes and our close, and the relay waits
    /// (ignoring other frames) for the client's close before it ends the stream.
    #[tokio::test(start_paused = true)]
    async fn our_close_waits_for_the_clients_close_and_no_longer() {
        let mut live = start(Mode::Binary, 1 << 16, 1 << 16, Vec::new(), None);
        live.target.write_all(b"bye").await.unwrap();
        live.target.shutdown().await.unwrap();
        assert_eq!(read_frame(&mut live.client).await, (0x82, b"bye".to_vec()));
        assert_eq!(read_close(&mut live.client).await, 1000);
        assert!(
            nothing_to_read(&mut live.client).await,
            "ended before our reply"
        );
        live.client.write_all(&masked(0x89, b"late")).await.unwrap();
        assert!(nothing_to_read(&mut live.client).await, "ended on a ping");
        let replied = Instant::now();
        live.client
            .write_all(&masked(0x88, &[0x03, 0xE8]))
            .await
            .unwrap();
        read_eof(&mut live.client).await;
        assert!(
            replied.elapsed() < Duration::from_secs(1),
            "{:?}",
            replied.elapsed()
        );
        let (report, _) = within("the relay's end", live.relay).await.unwrap();
        assert!(
            matches!(report.ended, Ended::TargetClosed),
            "{}",
            report.ended
        );
        assert_eq!(report.target_to_client, 3);
    }

    /// The client's close is answered at once even when the target reads slowly; the payload
    /// sent before it still reaches the target, then the target's end of stream, both without
    /// waiting out the close timeout.
    #[tokio::test(start_paused = true)]
    async fn a_client_close_is_answered_at_once_and_its_payload_still_delivered() {
        let t0 = Instant::now();
        let payload = pattern(1000);
        let mut live = start(Mode::Binary, 1 << 16, 64, Vec::new(), None);
        live.client
            .write_all(&[masked(0x82, &payload), masked(0x88, &[0x03, 0xE8])].concat())
            .await
            .unwrap();
        assert_eq!(read_close(&mut live.client).await, 1000);
        read_eof(&mut live.client).await;
        let mut got = Vec::new();
        within("the payload", live.target.read_to_end(&mut got))
            .await
            .unwrap();
        assert!(got == payload, "{} bytes", got.len());
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
        let (report, _) = within("the relay's end", live.relay).await.unwrap();
        assert!(matches!(report.ended, Ended::ClientClosed(_)));
        assert_eq!(report.client_to_target, 1000);
    }

    /// The close frame reaches a client that is not reading when the target ends: the last
    /// data frame filled its pipe and was flushed, so "nothing to flush" must not pass for
    /// "written" while the close frame waits.
    #[tokio::test(start_paused = true)]
    async fn our_close_frame_waits_for_a_client_that_the_last_frame_filled() {
        // 62 bytes of payload + 2 of header: exactly the client's 64-byte pipe.
        let last = pattern(62);
        let mut live = start(Mode::Binary, 64, 1 << 16, Vec::new(), None);
        live.target.write_all(&last).await.unwrap();
        live.target.shutdown().await.unwrap();
        // The relay has read the target's end while the client has read nothing.
        settle().await;
        assert_eq!(read_frame(&mut live.client).await, (0x82, last));
        assert_eq!(read_close(&mut live.client).await, 1000);
        live.client
            .write_all(&masked(0x88, &[0x03, 0xE8]))
            .await
            .unwrap();
        read_eof(&mut live.client).await;
        let (report, _) = within("the relay's end", live.relay).await.unwrap();
        assert!(
            matches!(report.ended, Ended::TargetClosed),
            "{}",
            report.ended
        );
        assert_eq!(report.target_to_client, 62);
    }

    /// The client's last payload reaches a target that is not reading when the client closes:
    /// the first frame filled the target's pipe and was flushed; the second, read with the
    /// close, is still written before the target's end of stream.
    #[tokio::test(start_paused = true)]
    async fn a_clients_last_payload_reaches_a_target_that_was_full_when_the_client_closed() {
        let t0 = Instant::now();
        let (first, second) = (pattern(64), pattern(10));
        let mut live = start(Mode::Binary, 1 << 16, 64, Vec::new(), None);
        live.client.write_all(&masked(0x82, &first)).await.unwrap();
        settle().await;
        live.client
            .write_all(&[masked(0x82, &second), masked(0x88, &[0x03, 0xE8])].concat())
            .await
            .unwrap();
        assert_eq!(read_close(&mut live.client).await, 1000);
        let mut got = Vec::new();
        within("the payload", live.target.read_to_end(&mut got))
            .await
            .unwrap();
        assert!(got == [first, second].concat(), "{} bytes", got.len());
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
        let (report, _) = within("the relay's end", live.relay).await.unwrap();
        assert!(
            matches!(report.ended, Ended::ClientClosed(_)),
            "{}",
            report.ended
        );
        assert_eq!(report.client_to_target, 74);
    }

    /// After the client's close, a data frame not yet begun is dropped (the client will not
    /// read it), one begun is finished (a frame cut short would break the stream).
    #[tokio::test(start_paused = true)]
    async fn a_client_close_drops_a_data_frame_not_begun_and_finishes_one_begun() {
        // A pong too big for the client's 64-byte pipe goes first; "data" waits behind it.
        let mut live = start(Mode::Binary, 64, 1 << 16, Vec::new(), None);
        live.client
            .write_all(&masked(0x89, &[b'p'; 100]))
            .await
            .unwrap();
        live.target.write_all(b"data").await.unwrap();
        settle().await;
        live.client
            .write_all(&masked(0x88, &[0x03, 0xE8]))
            .await
            .unwrap();
        // The relay reads the close before the client reads anything.
        settle().await;
        assert_eq!(read_frame(&mut live.client).await, (0x8A, vec![b'p'; 100]));
        assert_eq!(read_close(&mut live.client).await, 1000);
        read_eof(&mut live.client).await;

        let sent = pattern(1000);
        let mut live = start(Mode::Binary, 64, 1 << 16, Vec::new(), None);
        live.target.write_all(&sent).await.unwrap();
        settle().await;
        live.client
            .write_all(&masked(0x88, &[0x03, 0xE8]))
            .await
            .unwrap();
        settle().await;
        assert_eq!(read_frame(&mut live.client).await, (0x82, sent));
        assert_eq!(read_close(&mut live.client).await, 1000);
        read_eof(&mut live.client).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_going_away_closes_the_session_with_1001() {
        let mut live = start(Mode::Binary, 1 << 16, 1 << 16, Vec::new(), None);
        settle().await;
        live.going_away.store(true, Ordering::Relaxed);
        // Whoever sets the flag wakes the session; here a ping does.
        live.client.write_all(&masked(0x89, b"")).await.unwrap();
        assert_eq!(read_close(&mut live.client).await, 1001);
        let (report, _) = within("the relay's end", live.relay).await.unwrap();
        assert!(
            matches!(&report.ended, Ended::Failed(e) if matches!(e.kind, Kind::GoingAway)),
            "{}",
            report.ended
        );
    }
}
