//! The first-bytes classifier and the Flash policy request check. Properties: no panic on any
//! bytes (including none, which the server never passes); TLS exactly when the first byte is
//! 0x16 (a TLS handshake record), a Flash policy request exactly when it is `<`, HTTP
//! otherwise; the policy check is Complete only for the exact request, Incomplete only for a
//! proper prefix of it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use websockify::codec::{check_policy_request, classify, PolicyCheck, Protocol, POLICY_REQUEST};

fuzz_target!(|input: &[u8]| {
    let got = classify(input);
    let expected = match input.first() {
        Some(0x16) => Protocol::Tls,
        Some(b'<') => Protocol::FlashPolicy,
        _ => Protocol::Http,
    };
    assert_eq!(got, expected, "{input:x?}");
    // Only the first byte decides: more bytes never change the answer.
    if !input.is_empty() {
        assert_eq!(classify(&input[..1]), got);
    }
    let check = check_policy_request(input);
    let expected_check = if input == POLICY_REQUEST {
        PolicyCheck::Complete
    } else if POLICY_REQUEST.starts_with(input) {
        PolicyCheck::Incomplete
    } else {
        PolicyCheck::Wrong
    };
    assert_eq!(check, expected_check, "{input:x?}");
});
