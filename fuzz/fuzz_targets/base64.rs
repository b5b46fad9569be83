//! The streaming in-place base64 decoder of the `base64` subprotocol against the `base64`
//! crate's STANDARD engine.
//!
//! Input layout: `[layout] [split header and stream, see common::split]`. The pieces of one
//! message are laid out as the relay lays out a read: each piece goes into a buffer at least 2
//! bytes past the output cursor (`decode_in_place`'s precondition `out + 2 <= start`), with
//! junk (bytes that are not base64) around it; `layout` picks the extra distance (0-3 bytes,
//! so the tight `out + 2 == start` case is common) and which pieces start a new buffer (as
//! a new read does; the output cursor then goes back to 0). Properties:
//! - the decoder accepts exactly what the STANDARD engine accepts and outputs the same bytes
//!   (see `expected` for the one deliberate difference);
//! - decoding in place never overwrites input not yet read (it would show as different output);
//! - after `finish` the decoder is ready for the next message.
#![no_main]

mod common;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, DecodeError, Engine as _};
use libfuzzer_sys::fuzz_target;
use websockify::codec::base64::Base64Decoder;

const JUNK: u8 = b'!';

/// STANDARD, but accepting non-zero bits after the last full byte (`QR==` as `QQ==`).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// What the decoder must produce: STANDARD's answer, except that, like the reference's Python
/// `b64decode`, non-zero trailing bits in the last symbol are accepted and dropped.
fn expected(text: &[u8]) -> Option<Vec<u8>> {
    match STANDARD.decode(text) {
        Ok(bytes) => Some(bytes),
        Err(DecodeError::InvalidLastSymbol(..)) => LENIENT.decode(text).ok(),
        Err(_) => None,
    }
}

/// Decodes `stream`, cut at `pieces`, as the relay would.
fn decode(
    d: &mut Base64Decoder,
    layout: u8,
    stream: &[u8],
    pieces: &[(usize, usize)],
) -> Option<Vec<u8>> {
    let extra = (layout & 3) as usize;
    let new_buffer_bits = layout >> 2;
    let mut result = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut out = 0;
    for (i, &(a, b)) in pieces.iter().enumerate() {
        if i == 0 || new_buffer_bits & (1 << (i % 6)) != 0 {
            result.extend_from_slice(&buf[..out]);
            buf.clear();
            out = 0;
        }
        let start = buf.len().max(out + 2) + extra;
        buf.resize(start, JUNK);
        buf.extend_from_slice(&stream[a..b]);
        let end = buf.len();
        buf.extend_from_slice(&[JUNK; 3]);
        let new_out = d.decode_in_place(&mut buf, start, end, out).ok()?;
        assert!(
            new_out >= out && new_out <= end,
            "output cursor out of range"
        );
        out = new_out;
    }
    result.extend_from_slice(&buf[..out]);
    d.finish().ok()?;
    Some(result)
}

fuzz_target!(|input: &[u8]| {
    let Some((&layout, rest)) = input.split_first() else {
        return;
    };
    let (stream, pieces) = common::split(rest);
    let want = expected(stream);
    let mut d = Base64Decoder::new();
    let got = decode(&mut d, layout, stream, &pieces);
    assert_eq!(got, want, "decoding {stream:?} in pieces {pieces:?}");
    // `finish` resets the decoder, also after an error: the next message decodes afresh.
    let _ = d.finish();
    let mut buf = *b"..QUJD";
    assert_eq!(d.decode_in_place(&mut buf, 2, 6, 0), Ok(3));
    assert_eq!(&buf[..3], b"ABC");
    assert_eq!(d.finish(), Ok(()));
});
