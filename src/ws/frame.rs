//! frame: the RFC 6455 frame codec, as pure functions over byte slices. The decoder streams:
//! it hands out each piece of payload as soon as it is in the buffer (unmasked in place) and
//! never holds a whole message, so a 4 GiB message costs what a 1 KiB one does.
//! No sockets here.

use super::close::close_code;
use super::Violation;

pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// The longest header a server frame needs (2 + 8 bytes of length, no mask).
pub const MAX_SERVER_HEADER: usize = 10;
/// The longest control payload (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Writes a server (unmasked) frame header for `len` payload bytes into the END of `out`
/// (at least `MAX_SERVER_HEADER` bytes long), and returns how many bytes it used. Writing at
/// the end lets a caller put the header right in front of payload it already read, so header
/// and payload leave in one write with no copy.
pub fn write_server_header(out: &mut [u8], opcode: u8, len: usize) -> usize {
    let first = 0x80 | opcode;
    let end = out.len();
    if len < 126 {
        out[end - 2] = first;
        out[end - 1] = len as u8;
        2
    } else if len <= u16::MAX as usize {
        out[end - 4] = first;
        out[end - 3] = 126;
        out[end - 2..].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[end - 10] = first;
        out[end - 9] = 127;
        out[end - 8..].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// Appends a whole server frame (control frames, small messages) to `out`.
pub fn push_server_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    let mut header = [0u8; MAX_SERVER_HEADER];
    let n = write_server_header(&mut header, opcode, payload.len());
    out.extend_from_slice(&header[MAX_SERVER_HEADER - n..]);
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and `reason` (cut to fit a control frame).
pub fn push_close_frame(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    let mut reason_len = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(reason_len) {
        reason_len -= 1;
    }
    payload[2..2 + reason_len].copy_from_slice(&reason.as_bytes()[..reason_len]);
    push_server_frame(out, opcode::CLOSE, &payload[..2 + reason_len]);
}

/// XORs `data` with `mask`, starting at mask position `offset` (0..4). Returns the mask
/// position after `data`. Word-wide: the mask is rotated once, then applied 8 bytes at a time,
/// which the compiler turns into vector code.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) -> usize {
    let rotated = [
        mask[offset & 3],
        mask[(offset + 1) & 3],
        mask[(offset + 2) & 3],
        mask[(offset + 3) & 3],
    ];
    let word = u64::from_ne_bytes([
        rotated[0], rotated[1], rotated[2], rotated[3], rotated[0], rotated[1], rotated[2],
        rotated[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    let tail = chunks.into_remainder();
    for (i, byte) in tail.iter_mut().enumerate() {
        *byte ^= rotated[i & 3];
    }
    (offset + data.len()) & 3
}

/// The kind of data message being received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    Text,
    Binary,
}

/// A complete control frame from the client.
#[derive(Clone, Copy)]
pub struct Control {
    pub opcode: u8,
    len: u8,
    payload: [u8; MAX_CONTROL_PAYLOAD],
}

impl Control {
    pub fn payload(&self) -> &[u8] {
        &self.payload[..self.len as usize]
    }
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("opcode", &self.opcode)
            .field("payload", &self.payload())
            .finish()
    }
}

/// What the decoder found next in the buffer.
#[derive(Debug)]
pub enum Item {
    /// `buf[start..end]` is payload of a data message, already unmasked. `end_of_message`
    /// marks the last piece of the message (it may be empty, e.g. for an empty message).
    Payload {
        start: usize,
        end: usize,
        kind: DataKind,
        end_of_message: bool,
    },
    /// A whole control frame (ping, pong or close).
    Control(Control),
    /// Everything in the buffer has been consumed; feed more bytes.
    NeedMore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting a header; `header_len` bytes of it are in `header`.
    Header,
    /// Inside a data frame's payload.
    Data,
    /// Inside a control frame's payload, which is collected whole (≤ 125 bytes).
    Control,
}

/// Streaming decoder of client (masked) frames. Holds at most one header and one control
/// payload: a few hundred bytes, whatever the message size.
pub struct Decoder {
    state: State,
    header: [u8; 14],
    header_len: u8,
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    mask_pos: u8,
    remaining: u64,
    /// Payload length of the current frame.
    frame_len: u64,
    /// The message being received, if a data frame without FIN was seen.
    message: Option<DataKind>,
    control: Control,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Decoder {
            state: State::Header,
            header: [0; 14],
            header_len: 0,
            fin: false,
            opcode: 0,
            mask: [0; 4],
            mask_pos: 0,
            remaining: 0,
            frame_len: 0,
            message: None,
            control: Control {
                opcode: 0,
                len: 0,
                payload: [0; MAX_CONTROL_PAYLOAD],
            },
        }
    }

    /// Whether the decoder sits between messages (no message or frame half received).
    pub fn is_idle(&self) -> bool {
        self.state == State::Header && self.header_len == 0 && self.message.is_none()
    }

    /// Inside a data frame's payload: the frame's payload length and how much of it is still to
    /// come. Lets the relay hold a small frame back until it is whole.
    pub fn data_frame_progress(&self) -> Option<(u64, u64)> {
        (self.state == State::Data).then_some((self.frame_len, self.remaining))
    }

    /// Decodes the next item from `buf[*pos..]`, advancing `*pos` past what it consumed.
    /// Payload is unmasked in place. Call until it returns `Item::NeedMore`.
    pub fn next(&mut self, buf: &mut [u8], pos: &mut usize) -> Result<Item, Violation> {
        loop {
            match self.state {
                State::Header => {
                    if !self.take_header(buf, pos)? {
                        return Ok(Item::NeedMore);
                    }
                    // A data frame with an empty payload still reports, so the message's end
                    // (and an empty text message's validity) is seen.
                    if self.state == State::Data && self.remaining == 0 {
                        self.state = State::Header;
                        return Ok(self.data_item(*pos, *pos));
                    }
                }
                State::Data => {
                    let available = buf.len() - *pos;
                    if available == 0 {
                        return Ok(Item::NeedMore);
                    }
                    let take = (self.remaining.min(available as u64)) as usize;
                    let start = *pos;
                    let end = start + take;
                    self.mask_pos =
                        apply_mask(&mut buf[start..end], self.mask, self.mask_pos as usize) as u8;
                    self.remaining -= take as u64;
                    *pos = end;
                    if self.remaining == 0 {
                        self.state = State::Header;
                    }
                    return Ok(self.data_item(start, end));
                }
                State::Control => {
                    let have = self.control.len as usize;
                    let take = (self.remaining as usize).min(buf.len() - *pos);
                    let slot = &mut self.control.payload[have..have + take];
                    slot.copy_from_slice(&buf[*pos..*pos + take]);
                    self.mask_pos = apply_mask(slot, self.mask, self.mask_pos as usize) as u8;
                    self.control.len += take as u8;
                    self.remaining -= take as u64;
                    *pos += take;
                    if self.remaining > 0 {
                        return Ok(Item::NeedMore);
                    }
                    self.state = State::Header;
                    return Ok(Item::Control(self.control));
                }
            }
        }
    }

    fn data_item(&mut self, start: usize, end: usize) -> Item {
        let kind = self.message.unwrap_or(DataKind::Binary);
        let end_of_message = self.state == State::Header && self.fin;
        if end_of_message {
            self.message = None;
        }
        Item::Payload {
            start,
            end,
            kind,
            end_of_message,
        }
    }

    /// Collects header bytes; returns true once a whole header was parsed and checked.
    fn take_header(&mut self, buf: &[u8], pos: &mut usize) -> Result<bool, Violation> {
        let start = *pos;
        let (b0, b1, header_size);
        if self.header_len == 0 && buf.len() - start >= 2 {
            // Fast path: the header's first bytes are all in this buffer.
            b0 = buf[start];
            b1 = buf[start + 1];
            header_size = header_size_of(b1);
            if buf.len() - start >= header_size {
                self.parse_header(b0, b1, &buf[start..start + header_size])?;
                *pos = start + header_size;
                return Ok(true);
            }
        }
        // Slow path: the header is split across reads; gather it byte by byte.
        while *pos < buf.len() {
            let have = self.header_len as usize;
            let needed = if have < 2 {
                2
            } else {
                header_size_of(self.header[1])
            };
            if have == needed {
                break;
            }
            self.header[have] = buf[*pos];
            self.header_len += 1;
            *pos += 1;
        }
        let have = self.header_len as usize;
        if have < 2 || have < header_size_of(self.header[1]) {
            return Ok(false);
        }
        let header = self.header;
        self.header_len = 0;
        self.parse_header(header[0], header[1], &header[..have])?;
        Ok(true)
    }

    fn parse_header(&mut self, b0: u8, b1: u8, header: &[u8]) -> Result<(), Violation> {
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err(Violation::new(
                close_code::PROTOCOL_ERROR,
                "reserved bits set without an extension",
            ));
        }
        if b1 & 0x80 == 0 {
            return Err(Violation::new(
                close_code::PROTOCOL_ERROR,
                "unmasked client frame",
            ));
        }
        let opcode = b0 & 0x0F;
        let len = match b1 & 0x7F {
            126 => u16::from_be_bytes([header[2], header[3]]) as u64,
            127 => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&header[2..10]);
                let len = u64::from_be_bytes(bytes);
                if len >> 63 != 0 {
                    return Err(Violation::new(
                        close_code::PROTOCOL_ERROR,
                        "frame length has its most significant bit set",
                    ));
                }
                len
            }
            n => n as u64,
        };
        let mask_at = header.len() - 4;
        self.mask.copy_from_slice(&header[mask_at..]);
        self.mask_pos = 0;
        self.fin = fin;
        self.opcode = opcode;
        self.remaining = len;
        self.frame_len = len;
        match opcode {
            opcode::CONTINUATION => {
                if self.message.is_none() {
                    return Err(Violation::new(
                        close_code::PROTOCOL_ERROR,
                        "continuation frame outside a message",
                    ));
                }
                self.state = State::Data;
            }
            opcode::TEXT | opcode::BINARY => {
                if self.message.is_some() {
                    return Err(Violation::new(
                        close_code::PROTOCOL_ERROR,
                        "new message before the previous one ended",
                    ));
                }
                self.message = Some(if opcode == opcode::TEXT {
                    DataKind::Text
                } else {
                    DataKind::Binary
                });
                self.state = State::Data;
            }
            opcode::CLOSE | opcode::PING | opcode::PONG => {
                if !fin {
                    return Err(Violation::new(
                        close_code::PROTOCOL_ERROR,
                        "fragmented control frame",
                    ));
                }
                if len > MAX_CONTROL_PAYLOAD as u64 {
                    return Err(Violation::new(
                        close_code::PROTOCOL_ERROR,
                        "control frame longer than 125 bytes",
                    ));
                }
                self.control.opcode = opcode;
                self.control.len = 0;
                self.state = State::Control;
            }
            _ => {
                return Err(Violation::new(
                    close_code::PROTOCOL_ERROR,
                    "reserved opcode",
                ))
            }
        }
        Ok(())
    }
}

/// Total header size (with the 4-byte mask) announced by the second header byte.
fn header_size_of(b1: u8) -> usize {
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    2 + mask
        + match b1 & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(opcode_byte: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![opcode_byte];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        let mut body = payload.to_vec();
        apply_mask(&mut body, mask, 0);
        out.extend_from_slice(&body);
        out
    }

    /// Payload bytes, the end-of-message flag of each piece, and the control frames.
    type Decoded = (Vec<u8>, Vec<bool>, Vec<Control>);

    /// Feeds `wire` in pieces of `step` bytes and collects what the decoder reports.
    fn decode_all(wire: &[u8], step: usize) -> Result<Decoded, Violation> {
        let mut decoder = Decoder::new();
        let mut data = Vec::new();
        let mut ends = Vec::new();
        let mut controls = Vec::new();
        for piece in wire.chunks(step) {
            let mut buf = piece.to_vec();
            let mut pos = 0;
            loop {
                match decoder.next(&mut buf, &mut pos)? {
                    Item::NeedMore => break,
                    Item::Payload {
                        start,
                        end,
                        end_of_message,
                        ..
                    } => {
                        data.extend_from_slice(&buf[start..end]);
                        ends.push(end_of_message);
                    }
                    Item::Control(c) => controls.push(c),
                }
            }
        }
        Ok((data, ends, controls))
    }

    #[test]
    fn mask_is_its_own_inverse_at_every_offset() {
        let original: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for offset in 0..4 {
            let mut data = original.clone();
            apply_mask(&mut data, [1, 2, 3, 4], offset);
            for (i, (a, b)) in data.iter().zip(&original).enumerate() {
                assert_eq!(*a, b ^ [1, 2, 3, 4][(offset + i) % 4]);
            }
            apply_mask(&mut data, [1, 2, 3, 4], offset);
            assert_eq!(data, original);
        }
    }

    #[test]
    fn decodes_every_length_form_split_at_every_step() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let wire = masked(0x82, &payload, [9, 8, 7, 6]);
            for step in [1usize, 2, 3, 5, 13, 4096, wire.len()] {
                if len > 1000 && step < 13 {
                    continue;
                }
                let (data, ends, _) = decode_all(&wire, step).unwrap();
                assert_eq!(data, payload, "len {len} step {step}");
                assert_eq!(ends.last(), Some(&true));
            }
        }
    }

    #[test]
    fn fragmented_message_with_interleaved_ping() {
        let mut wire = masked(0x01, b"Hel", [1, 1, 1, 1]);
        wire.extend(masked(0x89, b"ping!", [2, 2, 2, 2]));
        wire.extend(masked(0x80, b"lo", [3, 3, 3, 3]));
        let (data, ends, controls) = decode_all(&wire, 1).unwrap();
        assert_eq!(data, b"Hello");
        assert!(ends.iter().rev().skip(1).all(|e| !e));
        assert_eq!(ends.last(), Some(&true));
        assert_eq!(controls.len(), 1);
        assert_eq!(controls[0].opcode, opcode::PING);
        assert_eq!(controls[0].payload(), b"ping!");
        // Debug shows the payload received, not the whole 125-byte buffer.
        assert_eq!(
            format!("{:?}", controls[0]),
            "Control { opcode: 9, payload: [112, 105, 110, 103, 33] }"
        );
    }

    /// What the relay asks between reads: whether a message is half received, and how much
    /// of the current data frame is still to come.
    #[test]
    fn idleness_and_frame_progress_follow_the_stream() {
        let mut decoder = Decoder::new();
        assert!(decoder.is_idle());
        assert_eq!(decoder.data_frame_progress(), None);
        // Half a header: not idle.
        let first = masked(0x02, b"0123456789", [1, 2, 3, 4]);
        let mut buf = first[..1].to_vec();
        let mut pos = 0;
        assert!(matches!(
            decoder.next(&mut buf, &mut pos),
            Ok(Item::NeedMore)
        ));
        assert!(!decoder.is_idle());
        // The rest of the header and 4 of 10 payload bytes of a frame without FIN.
        let mut buf = first[1..10].to_vec();
        let mut pos = 0;
        assert!(matches!(
            decoder.next(&mut buf, &mut pos),
            Ok(Item::Payload { .. })
        ));
        assert_eq!(decoder.data_frame_progress(), Some((10, 6)));
        assert!(!decoder.is_idle());
        let mut buf = first[10..].to_vec();
        let mut pos = 0;
        assert!(matches!(
            decoder.next(&mut buf, &mut pos),
            Ok(Item::Payload {
                end_of_message: false,
                ..
            })
        ));
        // Between frames of an unfinished message: still not idle.
        assert_eq!(decoder.data_frame_progress(), None);
        assert!(!decoder.is_idle());
        let mut buf = masked(0x80, b"", [0; 4]);
        let mut pos = 0;
        assert!(matches!(
            decoder.next(&mut buf, &mut pos),
            Ok(Item::Payload {
                end_of_message: true,
                kind: DataKind::Binary,
                ..
            })
        ));
        assert!(decoder.is_idle());
    }

    #[test]
    fn the_message_kind_comes_from_its_first_frame() {
        for (first, kind) in [(0x01, DataKind::Text), (0x02, DataKind::Binary)] {
            let mut wire = masked(first, b"a", [0; 4]);
            wire.extend(masked(0x80, b"b", [0; 4]));
            let mut decoder = Decoder::new();
            let mut pos = 0;
            let mut kinds = Vec::new();
            while let Item::Payload { kind, .. } = decoder.next(&mut wire, &mut pos).unwrap() {
                kinds.push(kind);
            }
            assert_eq!(kinds, [kind, kind]);
        }
    }

    /// Two reads, split at every point of a stream of several frames: the same payload and
    /// control frames as one read (a header may start on the last byte of a read).
    #[test]
    fn a_stream_split_into_two_reads_anywhere_decodes_the_same() {
        let mut wire = masked(0x81, b"Hello", [1, 2, 3, 4]);
        wire.extend(masked(0x89, b"", [5, 6, 7, 8]));
        wire.extend(masked(0x82, &[7; 130], [9, 9, 9, 9]));
        wire.extend(masked(0x8A, b"pong", [4, 3, 2, 1]));
        let (data, _, controls) = decode_all(&wire, wire.len()).unwrap();
        assert_eq!(data.len(), 5 + 130);
        assert_eq!(controls.len(), 2);
        for split in 1..wire.len() {
            let mut decoder = Decoder::new();
            let (mut got, mut got_ends, mut got_controls) = (Vec::new(), Vec::new(), Vec::new());
            for piece in [&wire[..split], &wire[split..]] {
                // After a few bytes of slack, as the relay reads.
                let mut buf = [&[0xEE; 3][..], piece].concat();
                let mut pos = 3;
                loop {
                    match decoder.next(&mut buf, &mut pos).unwrap() {
                        Item::NeedMore => break,
                        Item::Payload {
                            start,
                            end,
                            end_of_message,
                            ..
                        } => {
                            got.extend_from_slice(&buf[start..end]);
                            got_ends.push(end_of_message);
                        }
                        Item::Control(c) => got_controls.push(c.payload().to_vec()),
                    }
                }
                assert_eq!(pos, buf.len(), "split {split}");
            }
            assert_eq!(got, data, "split {split}");
            assert_eq!(got_ends.iter().filter(|e| **e).count(), 2, "split {split}");
            assert_eq!(
                got_controls,
                [b"".to_vec(), b"pong".to_vec()],
                "split {split}"
            );
        }
    }

    #[test]
    fn violations_are_seen_when_the_header_arrives_byte_by_byte() {
        for wire in [vec![0x82, 0x01, 0x00], masked(0xC2, b"x", [0; 4])] {
            match decode_all(&wire, 1) {
                Err(Violation { code, .. }) => assert_eq!(code, 1002),
                other => panic!("{wire:?}: expected 1002, got {:?}", other.map(|r| r.0)),
            }
        }
    }

    #[test]
    fn a_control_frame_of_exactly_125_bytes_is_accepted() {
        let (_, _, controls) = decode_all(&masked(0x89, &[1; 125], [3; 4]), 7).unwrap();
        assert_eq!(controls[0].payload(), &[1; 125][..]);
    }

    fn protocol_code(wire: &[u8]) -> u16 {
        match decode_all(wire, wire.len()) {
            Err(Violation { code, .. }) => code,
            other => panic!("expected a protocol error, got {:?}", other.map(|r| r.0)),
        }
    }

    #[test]
    fn protocol_violations_are_1002() {
        // unmasked
        assert_eq!(protocol_code(&[0x82, 0x01, 0x00]), 1002);
        // reserved bits
        assert_eq!(protocol_code(&masked(0xC2, b"x", [0; 4])), 1002);
        // reserved opcodes
        assert_eq!(protocol_code(&masked(0x83, b"x", [0; 4])), 1002);
        assert_eq!(protocol_code(&masked(0x8B, b"", [0; 4])), 1002);
        // fragmented control frame
        assert_eq!(protocol_code(&masked(0x09, b"", [0; 4])), 1002);
        // control frame > 125 bytes
        assert_eq!(protocol_code(&masked(0x89, &[0; 126], [0; 4])), 1002);
        // continuation with nothing to continue
        assert_eq!(protocol_code(&masked(0x80, b"x", [0; 4])), 1002);
        // a new message while one is in progress
        let mut wire = masked(0x02, b"x", [0; 4]);
        wire.extend(masked(0x82, b"y", [0; 4]));
        assert_eq!(protocol_code(&wire), 1002);
    }

    #[test]
    fn huge_length_announcement_does_not_allocate_and_msb_is_refused() {
        let mut wire = vec![0x82, 0xFF];
        wire.extend_from_slice(&(1u64 << 63).to_be_bytes());
        wire.extend_from_slice(&[0; 4]);
        assert_eq!(protocol_code(&wire), 1002);
        // 2^63 - 1 is legal: the decoder streams it, holding nothing.
        let mut wire = vec![0x82, 0xFF];
        wire.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
        wire.extend_from_slice(&[0; 4]);
        wire.extend_from_slice(&[5; 100]);
        let (data, ends, _) = decode_all(&wire, wire.len()).unwrap();
        assert_eq!(data.len(), 100);
        assert_eq!(ends, vec![false]);
    }

    #[test]
    fn server_header_forms() {
        let mut h = [0u8; MAX_SERVER_HEADER];
        assert_eq!(write_server_header(&mut h, opcode::BINARY, 5), 2);
        assert_eq!(&h[8..], &[0x82, 5]);
        assert_eq!(write_server_header(&mut h, opcode::BINARY, 300), 4);
        assert_eq!(&h[6..], &[0x82, 126, 1, 44]);
        assert_eq!(write_server_header(&mut h, opcode::BINARY, 70000), 10);
        assert_eq!(&h[..2], &[0x82, 127]);
        let mut close = Vec::new();
        push_close_frame(&mut close, 1000, "Target closed");
        assert_eq!(&close[..4], &[0x88, 15, 0x03, 0xE8]);
        assert_eq!(&close[4..], b"Target closed");
    }

    /// A close reason is cut to fit a control frame (125 bytes with the code), and never in
    /// the middle of a character.
    #[test]
    fn close_reasons_are_cut_to_fit_on_a_character_boundary() {
        let mut close = Vec::new();
        push_close_frame(&mut close, 1011, &"x".repeat(200));
        assert_eq!(&close[..4], &[0x88, 125, 0x03, 0xF3]);
        assert_eq!(close.len(), 2 + 125);
        let mut close = Vec::new();
        push_close_frame(&mut close, 1000, &"é".repeat(100));
        assert_eq!(close[1], 2 + 122);
        assert_eq!(std::str::from_utf8(&close[4..]).unwrap(), "é".repeat(61));
        let mut close = Vec::new();
        push_close_frame(&mut close, 1000, "");
        assert_eq!(close, [0x88, 2, 0x03, 0xE8]);
    }

    /// The length forms switch exactly at 126 and 65,536 (RFC 6455 §5.2): 125 still fits in
    /// 7 bits, 126 and 127 would be read as "a longer length follows".
    #[test]
    fn server_header_length_boundaries() {
        let mut h = [0u8; MAX_SERVER_HEADER];
        assert_eq!(write_server_header(&mut h, opcode::TEXT, 125), 2);
        assert_eq!(&h[8..], &[0x81, 125]);
        assert_eq!(write_server_header(&mut h, opcode::TEXT, 126), 4);
        assert_eq!(&h[6..], &[0x81, 126, 0, 126]);
        assert_eq!(write_server_header(&mut h, opcode::TEXT, 65535), 4);
        assert_eq!(&h[6..], &[0x81, 126, 0xFF, 0xFF]);
        assert_eq!(write_server_header(&mut h, opcode::TEXT, 65536), 10);
        assert_eq!(&h[..], &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        // In a longer buffer the header still ends at its end, touching nothing before.
        for (len, header) in [
            (5, &[0x82, 5][..]),
            (300, &[0x82, 126, 1, 44]),
            (65536, &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let mut long = [0xAAu8; 32];
            let n = write_server_header(&mut long, opcode::BINARY, len);
            assert_eq!(&long[32 - n..], header, "{len}");
            assert!(long[..32 - n].iter().all(|&b| b == 0xAA), "{len}");
        }
    }
}
