//! The first-bytes classifier. Properties: no panic on any bytes (including none, which the
//! server never passes); TLS exactly when the first byte is 0x16 (a TLS handshake record).
#![no_main]

use libfuzzer_sys::fuzz_target;
use websockify::classify::{classify, Protocol};

fuzz_target!(|input: &[u8]| {
    let got = classify(input);
    let tls = input.first() == Some(&0x16);
    assert_eq!(got == Protocol::Tls, tls, "{input:x?}");
    assert_eq!(got == Protocol::Http, !tls);
    // Only the first byte decides: more bytes never change the answer.
    if !input.is_empty() {
        assert_eq!(classify(&input[..1]), got);
    }
});
