//! Shared by the targets: how a fuzz input is cut into "reads".
//!
//! Input layout: `[k] [s_1 .. s_k] [stream ...]`, with `k = input[0] % 16`. The stream is cut
//! into pieces of `s_1, s_2, ..., s_k, s_1, ...` bytes (cycling); a size of 255 means "the
//! rest". `k = 0`, or sizes that are all 0, mean one piece. Zero-length pieces are allowed
//! (a decoder must cope with an empty feed even if the relay never makes one).
//!
//! So a seed file that starts with a 0 byte is its stream, fed in one piece.
#![allow(dead_code)]

pub mod frames;

/// Splits an input into (stream, piece boundaries as `start..end` ranges).
pub fn split(input: &[u8]) -> (&[u8], Vec<(usize, usize)>) {
    let Some((&first, rest)) = input.split_first() else {
        return (&[], Vec::new());
    };
    let k = (first % 16) as usize;
    let k = k.min(rest.len());
    let (sizes, stream) = rest.split_at(k);
    let mut pieces = Vec::new();
    if sizes.iter().all(|&s| s == 0) {
        pieces.push((0, stream.len()));
        return (stream, pieces);
    }
    let mut at = 0;
    for &s in sizes.iter().cycle() {
        if at == stream.len() && !pieces.is_empty() {
            break;
        }
        let len = if s == 255 {
            stream.len() - at
        } else {
            (s as usize).min(stream.len() - at)
        };
        pieces.push((at, at + len));
        at += len;
        if at == stream.len() && len > 0 {
            break;
        }
    }
    (stream, pieces)
}
