//! The streaming UTF-8 validator, fed in pieces (see `common::split`). Properties:
//! - the verdict (all pieces fed, then `finish`) equals `std::str::from_utf8(stream).is_ok()`;
//! - fail-fast, both ways: `feed` fails exactly when the bytes fed so far contain a sequence
//!   that no continuation can make valid (std's `error_len()` is `Some`), so it never fails on
//!   a valid prefix and never accepts a piece that already settles the message as invalid.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use websockify::codec::utf8::Utf8Validator;

/// Whether `prefix` can no longer be the start of valid UTF-8.
fn settled_invalid(prefix: &[u8]) -> bool {
    matches!(std::str::from_utf8(prefix), Err(e) if e.error_len().is_some())
}

fuzz_target!(|input: &[u8]| {
    let (stream, pieces) = common::split(input);
    let expected = std::str::from_utf8(stream).is_ok();
    let mut v = Utf8Validator::new();
    let mut verdict = Ok(());
    for &(a, b) in &pieces {
        let fed = v.feed(&stream[a..b]);
        assert_eq!(
            fed.is_err(),
            settled_invalid(&stream[..b]),
            "feed verdict after {b} bytes of {stream:x?} (pieces {pieces:?})"
        );
        if fed.is_err() {
            verdict = fed;
            break;
        }
    }
    if verdict.is_ok() {
        verdict = v.finish();
    }
    assert_eq!(
        verdict.is_ok(),
        expected,
        "{stream:x?} in pieces {pieces:?}"
    );
    // After `finish` the validator is ready for the next message.
    if verdict.is_ok() {
        assert!(v.feed(b"ok").and_then(|()| v.finish()).is_ok());
    }
});
