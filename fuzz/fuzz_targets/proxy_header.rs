//! The PROXY protocol header parser, fed as the server reads (the first 15 bytes, then exactly
//! what each `Need` asks for). Properties: no panic; every `Need` is positive and never reads
//! past a bound (107 bytes for v1, 16 + 2048 for v2) or past the header (a header that parses
//! was consumed whole, nothing after it); whatever names addresses survives being written
//! again, in v1 and in v2, and parsed back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use websockify::codec::{
    encode_proxy_v1, encode_proxy_v2, parse_proxy_header, ProxyAddrs, ProxyStep, PROXY_MIN_HEADER,
};

/// Feeds `input` as a reader would; the header and its length, if one parses.
fn feed(input: &[u8]) -> Option<(websockify::codec::ProxyHeader, usize)> {
    let mut have = PROXY_MIN_HEADER.min(input.len());
    loop {
        match parse_proxy_header(&input[..have]) {
            Err(_) => return None,
            Ok(ProxyStep::Done(header, len)) => {
                assert_eq!(len, have, "a header is exactly what was read");
                return Some((header, len));
            }
            Ok(ProxyStep::Need(n)) => {
                assert!(n > 0);
                let limit = if input.starts_with(b"PROXY ") { 107 } else { 16 + 2048 };
                assert!(have + n <= limit, "asked past the bound: {have} + {n}");
                if have + n > input.len() {
                    return None;
                }
                have += n;
            }
        }
    }
}

fn canonical(addrs: ProxyAddrs) -> ProxyAddrs {
    let c = |a: std::net::SocketAddr| std::net::SocketAddr::new(a.ip().to_canonical(), a.port());
    ProxyAddrs {
        source: c(addrs.source),
        destination: c(addrs.destination),
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((header, _)) = feed(input) else {
        return;
    };
    let Some(addrs) = header.addrs else { return };
    for encoded in [encode_proxy_v1(Some(addrs)), encode_proxy_v2(Some(addrs))] {
        let (again, len) = feed(&encoded).expect("our own header parses");
        assert_eq!(len, encoded.len());
        let again = again.addrs.expect("addresses survive");
        let (a, b) = (canonical(addrs), canonical(again));
        // Mixed families are written as IPv6: compare through the canonical form.
        assert_eq!(a.source.port(), b.source.port());
        assert_eq!(a.destination.port(), b.destination.port());
        assert_eq!(a.source.ip(), b.source.ip().to_canonical());
        assert_eq!(a.destination.ip(), b.destination.ip().to_canonical());
    }
});
