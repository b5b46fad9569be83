//! An independent, whole-stream reading of RFC 6455 client framing (§5.2): the model the
//! `frame_decoder` target checks the streaming decoder against, and the `relay` target builds
//! its expectations on.
#![allow(dead_code)]

use websockify::codec::frame::DataKind;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Data(DataKind, Vec<u8>),
    End,
    Control(u8, Vec<u8>),
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub events: Vec<Event>,
    /// (close code, stream offset of the header's last byte)
    pub error: Option<(u16, usize)>,
    /// No frame or message left half received.
    pub idle: bool,
}

pub fn push(events: &mut Vec<Event>, event: Event) {
    if let Event::Data(kind, bytes) = &event {
        if bytes.is_empty() {
            return;
        }
        if let Some(Event::Data(last_kind, last)) = events.last_mut() {
            assert_eq!(*last_kind, *kind, "kind changed inside a message");
            last.extend_from_slice(bytes);
            return;
        }
    }
    events.push(event);
}

/// RFC 6455 §5.2 client framing, read from the whole stream at once.
pub fn model(stream: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    let mut message: Option<DataKind> = None;
    let mut at = 0;
    loop {
        let rest = &stream[at..];
        if rest.len() < 2 {
            out.idle = rest.is_empty() && message.is_none();
            return out;
        }
        let (b0, b1) = (rest[0], rest[1]);
        let masked = b1 & 0x80 != 0;
        let ext = match b1 & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header = 2 + ext + if masked { 4 } else { 0 };
        if rest.len() < header {
            out.idle = false;
            return out;
        }
        let fail = |out: &mut Outcome| out.error = Some((1002, at + header - 1));
        let len: u64 = match ext {
            0 => (b1 & 0x7F) as u64,
            2 => u16::from_be_bytes([rest[2], rest[3]]) as u64,
            _ => u64::from_be_bytes(rest[2..10].try_into().expect("8 bytes")),
        };
        let opcode = b0 & 0x0F;
        let fin = b0 & 0x80 != 0;
        let control = opcode >= 8;
        let bad = b0 & 0x70 != 0
            || !masked
            || len >> 63 != 0
            || match opcode {
                0 => message.is_none(),
                1 | 2 => message.is_some(),
                8..=10 => !fin || len > 125,
                _ => true,
            };
        if bad {
            fail(&mut out);
            return out;
        }
        let mask = &rest[header - 4..header];
        let body_at = at + header;
        let available = (stream.len() - body_at) as u64;
        let take = len.min(available) as usize;
        let mut body = stream[body_at..body_at + take].to_vec();
        for (i, b) in body.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        if control {
            if (take as u64) < len {
                out.idle = false;
                return out;
            }
            out.events.push(Event::Control(opcode, body));
        } else {
            let kind = match opcode {
                1 => DataKind::Text,
                2 => DataKind::Binary,
                _ => message.expect("checked above"),
            };
            message = Some(kind);
            push(&mut out.events, Event::Data(kind, body));
            if (take as u64) < len {
                out.idle = false;
                return out;
            }
            if fin {
                out.events.push(Event::End);
                message = None;
            }
        }
        at = body_at + take;
    }
}

/// RFC 6455 §5.5.1 and §7.4: what a close payload means. `Ok((code, reason))` for a valid one
/// (no code when empty), `Err(close code)` for one that must fail the connection.
pub fn close_verdict(payload: &[u8]) -> Result<(Option<u16>, &str), u16> {
    match payload.len() {
        0 => Ok((None, "")),
        1 => Err(1002),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999) {
                return Err(1002);
            }
            let reason = std::str::from_utf8(&payload[2..]).map_err(|_| 1007u16)?;
            Ok((Some(code), reason))
        }
    }
}
