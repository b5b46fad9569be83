//! base64: the seed's `base64` subprotocol, where every message is base64 text. Decoding
//! streams across frames and reads, in place (output is never longer than input), so a base64
//! message, like a binary one, is never held whole.

use base64::Engine as _;

const INVALID: u8 = 0xFF;
const PAD: u8 = 0xFE;

const fn decode_table() -> [u8; 256] {
    let mut table = [INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < 64 {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table[b'=' as usize] = PAD;
    table
}

static TABLE: [u8; 256] = decode_table();

/// The message was not valid base64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidBase64;

/// Decodes one message at a time; carries an incomplete quartet between pieces.
#[derive(Debug, Default, Clone)]
pub struct Base64Decoder {
    quad: [u8; 4],
    quad_len: u8,
    /// A padded quartet ended the data: nothing may follow in this message.
    padded: bool,
}

impl Base64Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes `buf[start..end]` and writes the bytes at `buf[out..]`. Returns the new output
    /// end. Needs `out + 2 <= start`: completing a quartet carried from the previous piece can
    /// write 3 bytes after reading just 1, and must not overwrite bytes not yet read.
    pub fn decode_in_place(
        &mut self,
        buf: &mut [u8],
        start: usize,
        end: usize,
        mut out: usize,
    ) -> Result<usize, InvalidBase64> {
        debug_assert!(out + 2 <= start);
        let mut pos = start;
        while pos < end {
            // Fast path: whole quartets straight from the buffer.
            if self.quad_len == 0 && !self.padded {
                while end - pos >= 4 {
                    let q = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
                    let (bytes, n) = self.decode_quad(q)?;
                    buf[out..out + n].copy_from_slice(&bytes[..n]);
                    out += n;
                    pos += 4;
                    if self.padded {
                        break;
                    }
                }
                if pos == end {
                    break;
                }
            }
            if self.padded {
                return Err(InvalidBase64);
            }
            self.quad[self.quad_len as usize] = buf[pos];
            self.quad_len += 1;
            pos += 1;
            if self.quad_len == 4 {
                self.quad_len = 0;
                let (bytes, n) = self.decode_quad(self.quad)?;
                buf[out..out + n].copy_from_slice(&bytes[..n]);
                out += n;
            }
        }
        Ok(out)
    }

    /// Ends a message: a partial quartet is invalid.
    pub fn finish(&mut self) -> Result<(), InvalidBase64> {
        let ok = self.quad_len == 0;
        *self = Self::default();
        if ok {
            Ok(())
        } else {
            Err(InvalidBase64)
        }
    }

    fn decode_quad(&mut self, q: [u8; 4]) -> Result<([u8; 3], usize), InvalidBase64> {
        let v = [
            TABLE[q[0] as usize],
            TABLE[q[1] as usize],
            TABLE[q[2] as usize],
            TABLE[q[3] as usize],
        ];
        if v[0] >= 64 || v[1] >= 64 {
            return Err(InvalidBase64);
        }
        let n = match (v[2], v[3]) {
            (a, b) if a < 64 && b < 64 => 3,
            (a, PAD) if a < 64 => 2,
            (PAD, PAD) => 1,
            _ => return Err(InvalidBase64),
        };
        if n < 3 {
            self.padded = true;
        }
        let bits = (v[0] as u32) << 18
            | (v[1] as u32) << 12
            | ((v[2] & 0x3F) as u32) << 6
            | (v[3] & 0x3F) as u32;
        Ok(([(bits >> 16) as u8, (bits >> 8) as u8, bits as u8], n))
    }
}

/// Encodes target bytes for a base64 client.
pub fn encode(input: &[u8], output: &mut [u8]) -> usize {
    base64::engine::general_purpose::STANDARD
        .encode_slice(input, output)
        .unwrap_or(0)
}

/// Bytes `encode` needs for `n` input bytes.
pub const fn encoded_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    fn decode_split(text: &[u8], step: usize) -> Result<Vec<u8>, InvalidBase64> {
        let mut d = Base64Decoder::new();
        let mut result = Vec::new();
        for piece in text.chunks(step.max(1)) {
            // Put some junk in front so `out < start` is exercised.
            let mut buf = b"hdr".to_vec();
            buf.extend_from_slice(piece);
            let out = d.decode_in_place(&mut buf, 3, 3 + piece.len(), 0)?;
            result.extend_from_slice(&buf[..out]);
        }
        d.finish()?;
        Ok(result)
    }

    #[test]
    fn decodes_what_the_standard_engine_encodes_at_every_split() {
        for len in 0..40usize {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = STANDARD.encode(&data);
            for step in 1..=text.len().max(1) {
                assert_eq!(decode_split(text.as_bytes(), step).unwrap(), data);
            }
        }
    }

    #[test]
    fn rejects_bad_alphabet_padding_and_truncation() {
        assert!(decode_split(b"ab!d", 4).is_err());
        assert!(decode_split(b"abc", 4).is_err());
        assert!(decode_split(b"a===", 4).is_err());
        assert!(decode_split(b"ab==abcd", 8).is_err());
        assert!(decode_split(b"ab==abcd", 3).is_err());
        assert!(decode_split(b"=abc", 4).is_err());
    }

    #[test]
    fn encode_matches_length() {
        let mut out = [0u8; 8];
        assert_eq!(encode(b"hello", &mut out), encoded_len(5));
        assert_eq!(&out, b"aGVsbG8=");
    }
}
