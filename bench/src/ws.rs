//! The client side of WebSocket, written by hand so the load generator never becomes the
//! bottleneck: one write per frame (header + payload in one buffer, remasked in place with a
//! word-wide XOR), and a streaming frame parser that hands payload slices out of the read
//! buffer without copying.

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest HTTP response head we accept before calling the peer broken.
const MAX_HEAD: usize = 16 * 1024;

/// Read buffer of the frame receiver: large, so one syscall can carry several 64 KiB frames.
pub const READ_BUF: usize = 256 * 1024;

/// xorshift64*: mask keys and the handshake nonce must vary, not be cryptographic; this keeps
/// the client free of a `rand` dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeds from the clock and a caller-chosen salt (e.g. the connection index).
    pub fn seeded(salt: u64) -> Self {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        let s = t ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x2545_f491_4f6c_dd1d;
        Rng(if s == 0 { 1 } else { s })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Standard base64 with padding; only used for the 16-byte `Sec-WebSocket-Key`.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// XORs `data` with the 4-byte mask `key` (data[i] ^= key[i % 4]), eight bytes at a time.
pub fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ word).to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, hence of 4: the key phase restarts at 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// Sends the upgrade request and reads the response head. Returns the bytes that arrived
/// after the head (the start of the first frames), which the `Receiver` must see first.
/// The caller bounds this with a timeout.
pub async fn handshake<S>(
    s: &mut S,
    host: &str,
    path: &str,
    protocol: Option<&str>,
    rng: &mut Rng,
) -> io::Result<Vec<u8>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    nonce[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n",
        base64(&nonce)
    );
    if let Some(p) = protocol {
        req.push_str("Sec-WebSocket-Protocol: ");
        req.push_str(p);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;

    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed during the WebSocket handshake",
            ));
        }
        let scan_from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if let Some(pos) = head[scan_from..].windows(4).position(|w| w == b"\r\n\r\n") {
            let end = scan_from + pos + 4;
            let status = head
                .split(|&b| b == b'\r')
                .next()
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .unwrap_or_default();
            let mut parts = status.split_whitespace();
            let _version = parts.next();
            if parts.next() != Some("101") {
                return Err(io::Error::other(format!("handshake refused: {status:?}")));
            }
            return Ok(head.split_off(end));
        }
        if head.len() > MAX_HEAD {
            return Err(io::Error::other("handshake response head too large"));
        }
    }
}

/// Builds outgoing messages. In WebSocket mode the frame (header + masked payload) lives in
/// one buffer that is re-masked in place for every send, so a send is one XOR pass and one
/// `write_all`; in raw TCP mode the payload is sent as is.
pub struct Sender {
    buf: Vec<u8>,
    /// Offset of the payload in `buf` (0 in raw mode).
    payload_at: usize,
    /// The key the payload in `buf` is currently masked with.
    key: [u8; 4],
    ws: bool,
    rng: Rng,
}

impl Sender {
    pub fn new(payload: &[u8], ws: bool, rng: Rng) -> Self {
        if !ws {
            return Sender {
                buf: payload.to_vec(),
                payload_at: 0,
                key: [0; 4],
                ws,
                rng,
            };
        }
        let mut buf = Vec::with_capacity(payload.len() + 14);
        buf.push(0x82); // FIN + binary
        let len = payload.len();
        if len < 126 {
            buf.push(0x80 | len as u8);
        } else if len <= 0xffff {
            buf.push(0x80 | 126);
            buf.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            buf.push(0x80 | 127);
            buf.extend_from_slice(&(len as u64).to_be_bytes());
        }
        buf.extend_from_slice(&[0; 4]); // mask key, all zero: payload stays unmasked for now
        let payload_at = buf.len();
        buf.extend_from_slice(payload);
        Sender {
            buf,
            payload_at,
            key: [0; 4],
            ws,
            rng,
        }
    }

    /// The bytes to write for the next message: a freshly masked frame, or the raw payload.
    pub fn next_frame(&mut self) -> &[u8] {
        if self.ws {
            let new = (self.rng.next_u64() as u32).to_ne_bytes();
            let delta = [
                new[0] ^ self.key[0],
                new[1] ^ self.key[1],
                new[2] ^ self.key[2],
                new[3] ^ self.key[3],
            ];
            apply_mask(&mut self.buf[self.payload_at..], delta);
            self.buf[self.payload_at - 4..self.payload_at].copy_from_slice(&new);
            self.key = new;
        }
        &self.buf
    }

    /// A close frame (status 1000), masked as a client must.
    pub fn close_frame(&mut self) -> [u8; 8] {
        let key = (self.rng.next_u64() as u32).to_ne_bytes();
        let code = 1000u16.to_be_bytes();
        [
            0x88,
            0x82,
            key[0],
            key[1],
            key[2],
            key[3],
            code[0] ^ key[0],
            code[1] ^ key[1],
        ]
    }
}

/// Turns the incoming byte stream into payload bytes. WebSocket mode parses server frames
/// incrementally (a header may straddle two reads); raw mode passes bytes through.
pub struct Receiver {
    ws: bool,
    buf: Box<[u8]>,
    /// Bytes read together with the handshake response, consumed before the socket.
    pending: Vec<u8>,
    frames: FrameState,
}

#[derive(Default)]
struct FrameState {
    /// Payload bytes left in the current frame.
    remaining: u64,
    /// The current frame is a control frame (ping/pong): its payload is not data.
    skip: bool,
    hdr: [u8; 14],
    hdr_len: usize,
}

/// What one `Receiver::read_some` call produced.
pub enum Read {
    /// This many payload bytes were delivered (possibly 0, e.g. a read that held only a header).
    Data(usize),
    /// The peer closed the TCP connection.
    Eof,
}

impl Receiver {
    pub fn new(ws: bool, pending: Vec<u8>) -> Self {
        Self::with_capacity(ws, pending, READ_BUF)
    }

    /// A smaller read buffer, for modes that keep many mostly idle connections.
    pub fn with_capacity(ws: bool, pending: Vec<u8>, cap: usize) -> Self {
        Receiver {
            ws,
            buf: vec![0u8; cap.max(1)].into_boxed_slice(),
            pending,
            frames: FrameState::default(),
        }
    }

    /// One socket read (or the handshake leftovers); calls `on_data` for each payload slice.
    pub async fn read_some<R, F>(&mut self, r: &mut R, mut on_data: F) -> io::Result<Read>
    where
        R: AsyncRead + Unpin,
        F: FnMut(&[u8]),
    {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            return self.deliver_owned(&pending, &mut on_data).map(Read::Data);
        }
        let n = r.read(&mut self.buf).await?;
        if n == 0 {
            return Ok(Read::Eof);
        }
        if !self.ws {
            on_data(&self.buf[..n]);
            return Ok(Read::Data(n));
        }
        self.frames
            .feed(&self.buf[..n], &mut on_data)
            .map(Read::Data)
    }

    fn deliver_owned<F: FnMut(&[u8])>(
        &mut self,
        data: &[u8],
        on_data: &mut F,
    ) -> io::Result<usize> {
        if self.ws {
            self.frames.feed(data, on_data)
        } else {
            on_data(data);
            Ok(data.len())
        }
    }
}

impl FrameState {
    /// Header length implied by the bytes of it seen so far.
    fn header_len(&self) -> usize {
        if self.hdr_len < 2 {
            return 2;
        }
        let b1 = self.hdr[1];
        let ext = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
    }

    fn feed<F: FnMut(&[u8])>(&mut self, mut data: &[u8], on_data: &mut F) -> io::Result<usize> {
        let mut delivered = 0;
        while !data.is_empty() {
            if self.remaining > 0 {
                let take = self.remaining.min(data.len() as u64) as usize;
                if !self.skip {
                    on_data(&data[..take]);
                    delivered += take;
                }
                self.remaining -= take as u64;
                data = &data[take..];
                continue;
            }
            let need = self.header_len();
            let take = (need - self.hdr_len).min(data.len());
            self.hdr[self.hdr_len..self.hdr_len + take].copy_from_slice(&data[..take]);
            self.hdr_len += take;
            data = &data[take..];
            if self.hdr_len < 2 || self.hdr_len < self.header_len() {
                continue;
            }
            self.start_frame()?;
        }
        Ok(delivered)
    }

    /// A complete header is in `hdr`: check it and set up the payload that follows.
    fn start_frame(&mut self) -> io::Result<()> {
        let (b0, b1) = (self.hdr[0], self.hdr[1]);
        let len = match b1 & 0x7f {
            126 => u64::from(u16::from_be_bytes([self.hdr[2], self.hdr[3]])),
            127 => {
                let mut l = [0u8; 8];
                l.copy_from_slice(&self.hdr[2..10]);
                u64::from_be_bytes(l)
            }
            l => u64::from(l),
        };
        self.hdr_len = 0;
        if b1 & 0x80 != 0 {
            return Err(io::Error::other("server sent a masked frame"));
        }
        if b0 & 0x70 != 0 {
            return Err(io::Error::other("server frame has RSV bits set"));
        }
        match b0 & 0x0f {
            0x0 | 0x2 => self.skip = false,
            0x9 | 0xa => self.skip = true,
            0x1 => {
                return Err(io::Error::other(
                    "server sent a text frame (did it pick the base64 subprotocol?)",
                ))
            }
            0x8 => return Err(io::Error::other("server sent a close frame")),
            op => return Err(io::Error::other(format!("server sent opcode {op:#x}"))),
        }
        self.remaining = len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn mask_matches_bytewise_definition() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for len in [0usize, 1, 3, 7, 8, 9, 15, 16, 17, 100] {
            let orig: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut fast = orig.clone();
            apply_mask(&mut fast, key);
            let slow: Vec<u8> = orig
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            assert_eq!(fast, slow, "len {len}");
        }
    }

    /// Unmasks a client frame the way a server would.
    fn decode_client_frame(f: &[u8]) -> Vec<u8> {
        assert_eq!(f[0], 0x82);
        assert!(f[1] & 0x80 != 0);
        let (len, at) = match f[1] & 0x7f {
            126 => (u16::from_be_bytes([f[2], f[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(f[2..10].try_into().unwrap()) as usize,
                10,
            ),
            l => (l as usize, 2),
        };
        let key: [u8; 4] = f[at..at + 4].try_into().unwrap();
        let mut p = f[at + 4..].to_vec();
        assert_eq!(p.len(), len);
        apply_mask(&mut p, key);
        p
    }

    #[test]
    fn sender_frames_unmask_to_payload_every_time() {
        for len in [5usize, 125, 126, 1000, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut s = Sender::new(&payload, true, Rng::seeded(len as u64));
            for _ in 0..3 {
                assert_eq!(decode_client_frame(s.next_frame()), payload, "len {len}");
            }
        }
    }

    fn server_frame(op: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x80 | op];
        if payload.len() < 126 {
            f.push(payload.len() as u8);
        } else if payload.len() <= 0xffff {
            f.push(126);
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        } else {
            f.push(127);
            f.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn parser_survives_any_split_and_skips_pings() {
        let mut stream = server_frame(2, &[1; 300]);
        stream.extend(server_frame(9, b"ping"));
        stream.extend(server_frame(2, &[2; 70000]));
        stream.extend(server_frame(0, &[3; 10]));
        for chunk in [1usize, 2, 3, 7, 100, 4096, 1 << 20] {
            let mut st = FrameState::default();
            let mut got = Vec::new();
            let mut n = 0;
            for c in stream.chunks(chunk) {
                n += st
                    .feed(c, &mut |d: &[u8]| got.extend_from_slice(d))
                    .unwrap();
            }
            assert_eq!(n, 70310, "chunk {chunk}");
            assert_eq!(got.len(), 70310);
            assert!(got[..300].iter().all(|&b| b == 1));
            assert!(got[300..70300].iter().all(|&b| b == 2));
            assert!(got[70300..].iter().all(|&b| b == 3));
        }
    }

    #[test]
    fn parser_rejects_close_text_and_masked() {
        for f in [
            server_frame(8, &[3, 232]),
            server_frame(1, b"hi"),
            vec![0x82, 0x81, 0, 0, 0, 0, 7],
        ] {
            let mut st = FrameState::default();
            assert!(st.feed(&f, &mut |_: &[u8]| {}).is_err());
        }
    }
}
