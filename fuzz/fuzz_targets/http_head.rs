//! The upgrade decision on arbitrary request heads, parsed as the server's stack parses them
//! (hyper reads the head with `httparse`, at most 100 headers, and builds an `http::HeaderMap`;
//! a head it cannot parse or whose names/values `http` refuses is answered 400 before our
//! code runs, so such inputs stop here). Then `upgrade::wants_websocket` and
//! `upgrade::check` run. Properties: no panic, and `check` agrees with an independent reading
//! of RFC 6455 §4.1/§4.2.1/§11.3 as this server applies it:
//! - refused as NotGet exactly for methods other than GET, then OldHttp for HTTP/1.0, then
//!   Body when a Content-Length other than 0 or a Transfer-Encoding is present, then
//!   DuplicateVersion / BadVersion unless there is exactly one `Sec-WebSocket-Version` and it is
//!   13, 8 or 7, then DuplicateKey / BadKey unless there is exactly one `Sec-WebSocket-Key` and
//!   (trimmed) it is 24 base64 characters of 16 bytes;
//! - when accepted, the accept key is 28 base64 characters (a 20-byte SHA-1) and equals
//!   base64(SHA-1(key + GUID)) computed here with another SHA-1;
//! - the protocol is `binary` if offered anywhere, else `base64` if offered, else none, and the
//!   relay mode matches it.
#![no_main]

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Version};
use libfuzzer_sys::fuzz_target;
use websockify::codec::upgrade::{self, Refusal};
use websockify::codec::Mode;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The request as hyper would hand it to the service, or None when hyper would answer 400.
fn parse(input: &[u8]) -> Option<(Method, Version, HeaderMap)> {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(input) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    let method = Method::from_bytes(req.method?.as_bytes()).ok()?;
    let version = match req.version? {
        0 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut map = HeaderMap::new();
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        map.append(name, value);
    }
    Some((method, version, map))
}

fn expected_protocol(headers: &HeaderMap) -> (Option<&'static str>, Mode) {
    let offered: Vec<&str> = headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|list| list.split(','))
        .map(|p| p.trim())
        .collect();
    if offered.contains(&"binary") {
        (Some("binary"), Mode::Binary)
    } else if offered.contains(&"base64") {
        (Some("base64"), Mode::Base64)
    } else {
        (None, Mode::Binary)
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((method, version, headers)) = parse(input) else {
        return;
    };
    let wants = upgrade::wants_websocket(&headers);
    let any_websocket_token = headers.get_all("upgrade").iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
        })
    });
    assert_eq!(wants, any_websocket_token);

    let version_ok = headers
        .get("sec-websocket-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| ["13", "8", "7"].contains(&v.trim()));
    let key = headers
        .get("sec-websocket-key")
        .map(|v| v.as_bytes().trim_ascii().to_vec());
    let key_ok = key
        .as_ref()
        .is_some_and(|k| k.len() == 24 && STANDARD.decode(k).is_ok_and(|raw| raw.len() == 16));

    let count = |name: &str| headers.get_all(name).iter().count();
    let body = headers.contains_key("transfer-encoding")
        || headers
            .get_all("content-length")
            .iter()
            .any(|v| v.as_bytes().trim_ascii() != b"0");
    match upgrade::check(&method, version, &headers) {
        Err(refusal) => {
            let want = if method != Method::GET {
                Refusal::NotGet
            } else if version == Version::HTTP_10 {
                Refusal::OldHttp
            } else if body {
                Refusal::Body
            } else if count("sec-websocket-version") > 1 {
                Refusal::DuplicateVersion
            } else if !version_ok {
                Refusal::BadVersion
            } else if count("sec-websocket-key") > 1 {
                Refusal::DuplicateKey
            } else {
                assert!(!key_ok, "refused a good key");
                Refusal::BadKey
            };
            assert_eq!(refusal, want);
        }
        Ok(upgrade) => {
            assert_eq!((&method, version), (&Method::GET, Version::HTTP_11));
            assert!(!body, "accepted a request with a body");
            assert_eq!(count("sec-websocket-version"), 1);
            assert_eq!(count("sec-websocket-key"), 1);
            assert!(version_ok && key_ok, "accepted a bad version or key");
            let key = key.expect("key_ok");
            assert_eq!(upgrade.accept.len(), 28);
            let raw = STANDARD.decode(&upgrade.accept);
            assert!(raw.is_ok_and(|r| r.len() == 20), "{}", upgrade.accept);
            let mut sha1 = sha1_smol::Sha1::new();
            sha1.update(&key);
            sha1.update(GUID.as_bytes());
            assert_eq!(upgrade.accept, STANDARD.encode(sha1.digest().bytes()));
            assert!(matches!(upgrade.protocol, None | Some("binary" | "base64")));
            assert_eq!(
                (upgrade.protocol, upgrade.mode),
                expected_protocol(&headers)
            );
            assert_eq!(
                upgrade::select_protocol(&headers),
                expected_protocol(&headers)
            );
        }
    }
});
