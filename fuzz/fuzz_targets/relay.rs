//! The relay itself (`relay::run`), both directions at once, over in-memory streams whose
//! capacities, write sizes and scheduling the input chooses, so partial reads and writes,
//! backpressure, held frames and leftover bytes all happen.
//!
//! The input is a structured case (`arbitrary`): the client's frames (whole messages cut
//! into fragments with pings between them, pings, pongs, close frames, raw frames with any
//! first byte, a length with its top bit set), how the bytes are written (some given as the
//! HTTP layer's leftover), the target's bytes, and the mode (binary or base64).
//!
//! Expectations come from an independent reading of the client's bytes
//! (`common::frames::model`) plus the RFC's rules for UTF-8, base64 and close payloads. The
//! session ends one of three ways: the client's close frame (echoed: same code and reason),
//! a protocol violation (close 1002 or 1007), or, when the client's frames end with neither,
//! a close the client sends once all the target's bytes have arrived. Properties:
//! - no panic, no hang (time is virtual: a session stuck with no timer left fails at once);
//! - the target receives a prefix of the expected payload bytes, and all of them, followed by
//!   end of stream, when the session ends with a close from the client;
//! - the client receives well-formed server frames (unmasked, FIN, minimal lengths): data
//!   whose concatenation is a prefix of the target's bytes (all of them when the client waited
//!   for them), one pong per ping before the end with the same payload in order, then exactly
//!   one close frame with the expected code (and reason, for an echo), then end of stream;
//! - `relay::run` reports the same ending, and byte counts equal to what was delivered when
//!   the session ended cleanly.
#![no_main]

mod common;

use std::time::Duration;

use arbitrary::Arbitrary;
use base64::Engine as _;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use common::frames::{close_verdict, model, Event};
use websockify::codec::frame::DataKind;
use websockify::codec::{self, Mode};
use websockify::{Ended, Kind, Side};

#[derive(Arbitrary, Debug)]
struct Case {
    base64: bool,
    items: Vec<Item>,
    /// How many of the client's first bytes arrive as the HTTP layer's leftover.
    leftover: u16,
    /// Sizes of the client's writes (cycled); 0 yields to the other tasks, then writes 1.
    client_writes: Vec<u16>,
    client_capacity: u16,
    target: Vec<u8>,
    target_repeat: u8,
    target_writes: Vec<u16>,
    target_capacity: u16,
    mask_seed: u32,
}

#[derive(Arbitrary, Debug)]
enum Item {
    /// A whole message: `body` repeated, base64-encoded if `encode`, cut into fragments of the
    /// `cuts` sizes (cycled), a ping after fragment i when `pings[i]`.
    Message {
        text: bool,
        body: Vec<u8>,
        repeat: u8,
        encode: bool,
        cuts: Vec<u16>,
        pings: Vec<bool>,
    },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// A close frame with this payload (any bytes).
    Close(Vec<u8>),
    /// A close frame with a code and a UTF-8 reason.
    CloseWith(u16, String),
    /// Any frame: first byte as given (FIN, RSV, opcode), masked or not, length in the
    /// minimal form or a longer one.
    Raw {
        first: u8,
        masked: bool,
        long_length: u8,
        payload: Vec<u8>,
    },
    /// A header announcing 2^63 + n bytes: refused before any payload.
    TopBitLength(u32),
}

/// Writes one client frame.
fn frame(out: &mut Vec<u8>, first: u8, payload: &[u8], mask: Option<[u8; 4]>, long: u8) {
    out.push(first);
    let m = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    match long % 3 {
        0 if len < 126 => out.push(m | len as u8),
        0 | 1 if len <= 0xFFFF => {
            out.push(m | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(m | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    match mask {
        Some(mask) => {
            out.extend_from_slice(&mask);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
}

/// The client's byte stream.
fn client_bytes(case: &Case) -> Vec<u8> {
    let mut out = Vec::new();
    let mut n = case.mask_seed;
    let mut mask = || {
        n = n.wrapping_mul(0x9E37_79B9).wrapping_add(0x7F4A_7C15);
        Some(n.to_le_bytes())
    };
    for item in &case.items {
        match item {
            Item::Message {
                text,
                body,
                repeat,
                encode,
                cuts,
                pings,
            } => {
                let mut body = body.repeat(1 + *repeat as usize % 64);
                if *encode {
                    body = base64::engine::general_purpose::STANDARD
                        .encode(&body)
                        .into_bytes();
                }
                let mut rest = &body[..];
                let mut i = 0;
                loop {
                    let cut = match cuts.get(i % cuts.len().max(1)) {
                        Some(&c) if c > 0 => (c as usize).min(rest.len()),
                        _ => rest.len(),
                    };
                    let (piece, after) = rest.split_at(cut);
                    let fin = after.is_empty();
                    let opcode = match (i, text) {
                        (0, true) => 0x1,
                        (0, false) => 0x2,
                        _ => 0x0,
                    };
                    frame(
                        &mut out,
                        opcode | if fin { 0x80 } else { 0 },
                        piece,
                        mask(),
                        0,
                    );
                    if !fin && pings.get(i).copied().unwrap_or(false) {
                        frame(&mut out, 0x89, &[i as u8], mask(), 0);
                    }
                    rest = after;
                    i += 1;
                    if fin {
                        break;
                    }
                }
            }
            Item::Ping(p) => frame(&mut out, 0x89, &p[..p.len().min(125)], mask(), 0),
            Item::Pong(p) => frame(&mut out, 0x8A, &p[..p.len().min(125)], mask(), 0),
            Item::Close(p) => frame(&mut out, 0x88, &p[..p.len().min(125)], mask(), 0),
            Item::CloseWith(code, reason) => {
                let mut p = code.to_be_bytes().to_vec();
                let mut end = reason.len().min(123);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                p.extend_from_slice(&reason.as_bytes()[..end]);
                frame(&mut out, 0x88, &p, mask(), 0);
            }
            Item::Raw {
                first,
                masked,
                long_length,
                payload,
            } => {
                let m = if *masked { mask() } else { None };
                frame(&mut out, *first, payload, m, *long_length);
            }
            Item::TopBitLength(n) => {
                out.extend_from_slice(&[0x82, 0xFF]);
                out.extend_from_slice(&((1u64 << 63) + *n as u64).to_be_bytes());
                out.extend_from_slice(&mask().unwrap_or_default());
            }
        }
    }
    out
}

/// How the session must end.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// The client's frames end with neither close nor error: the client closes (1000 "bye")
    /// once it has all of the target's bytes.
    Open,
    /// The client's close frame, echoed with this code and reason.
    Echo(u16, String),
    /// We close with this code.
    Violation(u16),
}

#[derive(Debug)]
struct Expected {
    to_target: Vec<u8>,
    pongs: Vec<Vec<u8>>,
    end: End,
}

/// RFC 4648 base64 as the reference decodes it (standard alphabet, canonical padding,
/// non-zero trailing bits allowed), fed a piece at a time. Fails at the byte that completes
/// an invalid quartet or follows a padded one, or at the end with a quartet unfinished.
#[derive(Default)]
struct Base64Model {
    quad: Vec<u8>,
    padded: bool,
}

impl Base64Model {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some((c - b'A') as u32),
            b'a'..=b'z' => Some((c - b'a' + 26) as u32),
            b'0'..=b'9' => Some((c - b'0' + 52) as u32),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }

    fn feed(&mut self, piece: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
        for &c in piece {
            if self.padded {
                return Err(());
            }
            self.quad.push(c);
            if self.quad.len() < 4 {
                continue;
            }
            let q = std::mem::take(&mut self.quad);
            let (a, b) = (Self::value(q[0]).ok_or(())?, Self::value(q[1]).ok_or(())?);
            let v = match (Self::value(q[2]), Self::value(q[3]), q[2], q[3]) {
                (Some(c), Some(d), _, _) => (a << 18 | b << 12 | c << 6 | d, 3),
                (Some(c), None, _, b'=') => (a << 18 | b << 12 | c << 6, 2),
                (None, None, b'=', b'=') => (a << 18 | b << 12, 1),
                _ => return Err(()),
            };
            out.extend_from_slice(&v.0.to_be_bytes()[1..1 + v.1]);
            self.padded = v.1 < 3;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ()> {
        let ok = self.quad.is_empty();
        *self = Self::default();
        if ok {
            Ok(())
        } else {
            Err(())
        }
    }
}

fn expected(stream: &[u8], mode: Mode) -> Expected {
    let outcome = model(stream);
    let mut exp = Expected {
        to_target: Vec::new(),
        pongs: Vec::new(),
        end: End::Open,
    };
    let mut text: Option<Vec<u8>> = None;
    let mut b64 = Base64Model::default();
    for event in &outcome.events {
        match event {
            Event::Data(kind, bytes) => match mode {
                Mode::Binary => {
                    if *kind == DataKind::Text {
                        let message = text.get_or_insert_with(Vec::new);
                        let before = message.len();
                        message.extend_from_slice(bytes);
                        if let Err(e) = std::str::from_utf8(message) {
                            if e.error_len().is_some() {
                                // Pieces before the bad one may have gone to the target,
                                // up to the longest prefix some continuation could repair
                                // (an unfinished character is at most 3 bytes).
                                let longest = message.len().min(e.valid_up_to() + 3);
                                let viable = (e.valid_up_to()..=longest)
                                    .rev()
                                    .find(|&n| match std::str::from_utf8(&message[..n]) {
                                        Ok(_) => true,
                                        Err(e) => e.error_len().is_none(),
                                    })
                                    .unwrap_or(e.valid_up_to());
                                let valid = viable.saturating_sub(before);
                                exp.to_target.extend_from_slice(&bytes[..valid]);
                                exp.end = End::Violation(1007);
                                return exp;
                            }
                        }
                    }
                    exp.to_target.extend_from_slice(bytes);
                }
                Mode::Base64 => {
                    if b64.feed(bytes, &mut exp.to_target).is_err() {
                        exp.end = End::Violation(1007);
                        return exp;
                    }
                }
            },
            Event::End => {
                let bad = match mode {
                    Mode::Binary => text
                        .take()
                        .is_some_and(|m| std::str::from_utf8(&m).is_err()),
                    Mode::Base64 => b64.finish().is_err(),
                };
                if bad {
                    exp.end = End::Violation(1007);
                    return exp;
                }
            }
            Event::Control(0x9, payload) => exp.pongs.push(payload.clone()),
            Event::Control(0x8, payload) => {
                exp.end = match close_verdict(payload) {
                    Ok((code, reason)) => End::Echo(code.unwrap_or(1000), reason.to_owned()),
                    Err(code) => End::Violation(code),
                };
                return exp;
            }
            Event::Control(..) => {}
        }
    }
    if let Some((code, _)) = outcome.error {
        exp.end = End::Violation(code);
    }
    exp
}

/// What the client saw.
#[derive(Debug, Default)]
struct Seen {
    data: Vec<u8>,
    pongs: Vec<Vec<u8>>,
    close: Option<(u16, Vec<u8>)>,
}

async fn fill<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>, n: usize) -> bool {
    let mut chunk = [0u8; 8192];
    while buf.len() < n {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
    true
}

/// Reads server frames until end of stream, checking each; tells `all_data` once `wanted`
/// data bytes have arrived.
async fn read_client<R: AsyncRead + Unpin>(
    mut r: R,
    mode: Mode,
    wanted: usize,
    all_data: watch::Sender<bool>,
) -> Seen {
    let mut seen = Seen::default();
    let mut buf = Vec::new();
    if wanted == 0 {
        let _ = all_data.send(true);
    }
    loop {
        if !fill(&mut r, &mut buf, 2).await {
            assert!(buf.is_empty(), "stream ended inside a frame header");
            return seen;
        }
        let (b0, b1) = (buf[0], buf[1]);
        assert_eq!(b1 & 0x80, 0, "server frame masked");
        assert_eq!(
            b0 & 0xF0,
            0x80,
            "server frame without FIN or with RSV bits: {b0:#x}"
        );
        let (len, header) = match b1 & 0x7F {
            126 => {
                assert!(fill(&mut r, &mut buf, 4).await, "cut in the length");
                let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
                assert!(len >= 126, "non-minimal 16-bit length {len}");
                (len, 4)
            }
            127 => {
                assert!(fill(&mut r, &mut buf, 10).await, "cut in the length");
                let len = u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes"));
                assert!(len > 0xFFFF && len >> 63 == 0, "bad 64-bit length {len}");
                (len as usize, 10)
            }
            n => (n as usize, 2),
        };
        assert!(
            fill(&mut r, &mut buf, header + len).await,
            "stream ended inside a frame"
        );
        let payload: Vec<u8> = buf.drain(..header + len).skip(header).collect();
        assert!(seen.close.is_none(), "a frame after the close frame");
        match (b0 & 0x0F, mode) {
            (0x2, Mode::Binary) => seen.data.extend_from_slice(&payload),
            (0x1, Mode::Base64) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(&payload)
                    .expect("a data frame that is not base64");
                seen.data.extend_from_slice(&bytes);
            }
            (0xA, _) => {
                assert!(len <= 125);
                seen.pongs.push(payload);
            }
            (0x8, _) => {
                assert!(len >= 2 && len <= 125, "close payload of {len} bytes");
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                assert!(std::str::from_utf8(&payload[2..]).is_ok());
                seen.close = Some((code, payload[2..].to_vec()));
            }
            (op, mode) => panic!("unexpected opcode {op:#x} in {mode:?} mode"),
        }
        if seen.data.len() >= wanted {
            let _ = all_data.send(true);
        }
    }
}

fn sizes(list: &[u16]) -> impl Iterator<Item = usize> + '_ {
    let list: &[u16] = if list.is_empty() { &[0xFFFF] } else { list };
    list.iter().cycle().map(|&s| s as usize)
}

async fn session(case: Case) {
    let mode = if case.base64 {
        Mode::Base64
    } else {
        Mode::Binary
    };
    let stream = client_bytes(&case);
    let exp = expected(&stream, mode);
    let target_bytes = case.target.repeat(1 + case.target_repeat as usize % 32);
    let split = (case.leftover as usize).min(stream.len());
    let leftover = Bytes::copy_from_slice(&stream[..split]);

    let (mut proxy_client, client) = tokio::io::duplex(1 + case.client_capacity as usize * 2);
    let (mut proxy_target, target) = tokio::io::duplex(1 + case.target_capacity as usize * 2);
    let relay = tokio::spawn(async move {
        let report = codec::relay(
            &mut proxy_client,
            &mut proxy_target,
            leftover,
            mode,
            &mut (),
        )
        .await;
        drop((proxy_client, proxy_target));
        report
    });

    // The target: sends its bytes, reads until end of stream, only then lets go.
    let target_writes: Vec<usize> = sizes(&case.target_writes).take(64).collect();
    let sent = target_bytes.clone();
    let target = tokio::spawn(async move {
        let (mut tr, mut tw) = tokio::io::split(target);
        let write = async {
            let mut rest = &sent[..];
            for size in target_writes.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let n = (*size).clamp(1, rest.len());
                if tw.write_all(&rest[..n]).await.is_err() {
                    break;
                }
                rest = &rest[n..];
            }
        };
        let read = async {
            let mut got = Vec::new();
            let _ = tr.read_to_end(&mut got).await;
            got
        };
        let ((), got) = tokio::join!(write, read);
        got
    });

    // The client: a writer and a reader.
    let (cr, mut cw) = tokio::io::split(client);
    let (all_tx, mut all_rx) = watch::channel(false);
    let reader = tokio::spawn(read_client(cr, mode, target_bytes.len(), all_tx));
    let client_writes: Vec<usize> = sizes(&case.client_writes).take(64).collect();
    let open = exp.end == End::Open;
    let writer = tokio::spawn(async move {
        let mut rest = &stream[split..];
        for size in client_writes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            if *size == 0 {
                tokio::task::yield_now().await;
            }
            let n = (*size).clamp(1, rest.len());
            if cw.write_all(&rest[..n]).await.is_err() {
                return;
            }
            rest = &rest[n..];
        }
        if open {
            let _ = all_rx.wait_for(|all| *all).await;
            let mut close = Vec::new();
            frame(&mut close, 0x88, b"\x03\xe8bye", Some([1, 2, 3, 4]), 0);
            let _ = cw.write_all(&close).await;
        }
        // Keep the write side open until the proxy is done with us.
        let _ = all_rx.wait_for(|_| false).await;
    });

    let report = relay.await.expect("relay task");
    let seen = reader.await.expect("client reader");
    let got = target.await.expect("target task");
    writer.abort();

    // Client → target.
    assert!(
        exp.to_target.starts_with(&got),
        "the target got {} bytes that are not a prefix of the {} expected",
        got.len(),
        exp.to_target.len()
    );
    // Target → client.
    assert!(
        target_bytes.starts_with(&seen.data),
        "the client got {} bytes that are not a prefix of the target's {}",
        seen.data.len(),
        target_bytes.len()
    );
    assert_eq!(seen.pongs, exp.pongs, "pongs");
    let (code, reason) = seen.close.clone().expect("no close frame");
    match &exp.end {
        End::Open => {
            assert_eq!(seen.data, target_bytes, "the client waited for every byte");
            assert_eq!((code, &reason[..]), (1000, &b"bye"[..]));
        }
        End::Echo(c, r) => assert_eq!((code, &reason[..]), (*c, r.as_bytes())),
        End::Violation(c) => assert_eq!(code, *c, "close code"),
    }
    match (&exp.end, &report.ended) {
        (End::Open, Ended::ClientClosed(info)) => {
            assert_eq!((info.code, &info.reason[..]), (Some(1000), "bye"));
        }
        (End::Echo(c, r), Ended::ClientClosed(info)) => {
            assert_eq!(info.code.unwrap_or(1000), *c);
            assert_eq!(&info.reason, r);
        }
        (End::Violation(c), Ended::Failed(err)) => {
            assert_eq!((err.side, err.kind), (Side::Client, Kind::Protocol(*c)));
        }
        (end, ended) => panic!("expected {end:?}, the relay reports {ended:?}"),
    }
    if !matches!(exp.end, End::Violation(_)) {
        assert_eq!(got, exp.to_target, "a clean close delivers everything");
        assert_eq!(report.client_to_target, got.len() as u64);
        assert!(report.target_to_client >= seen.data.len() as u64);
        assert!(report.target_to_client <= target_bytes.len() as u64);
    }
}

fuzz_target!(|case: Case| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        // Virtual time: with every task waiting and no timer due, it jumps ahead, so a hang
        // shows at once rather than after an hour.
        tokio::time::timeout(Duration::from_secs(3600), session(case))
            .await
            .expect("the session hung");
    });
});
