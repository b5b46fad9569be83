//! upgrade: the RFC 6455 server handshake as pure functions over a request head: is this an
//! upgrade, is it well-formed, which subprotocol do we answer, what is the accept key; and the
//! 101 answer itself.

use base64::Engine as _;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode, Version};

use super::web::Body;
use crate::ws::Mode;

/// The GUID every accept key is derived with (RFC 6455 §1.3).
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A well-formed upgrade request, decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The `Sec-WebSocket-Accept` value.
    pub accept: String,
    /// The `Sec-WebSocket-Protocol` to answer with, if any.
    pub protocol: Option<&'static str>,
    pub mode: Mode,
}

/// Why an upgrade request is refused: answered with HTTP 400 and [`Refusal::reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotGet,
    /// HTTP/1.0 (or 0.9) has no upgrade mechanism (RFC 6455 §4.1 asks for 1.1 or higher).
    OldHttp,
    /// A body (`Content-Length` other than 0, or `Transfer-Encoding`): its bytes would be taken
    /// for WebSocket frames after the 101.
    Body,
    BadKey,
    /// More than one `Sec-WebSocket-Key` (RFC 6455 §11.3.1).
    DuplicateKey,
    BadVersion,
    /// More than one `Sec-WebSocket-Version` (RFC 6455 §11.3.5).
    DuplicateVersion,
}

impl Refusal {
    /// The one-line reason, sent in the answer's body and logged.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NotGet => "WebSocket upgrade needs a GET request",
            Refusal::OldHttp => "WebSocket upgrade needs HTTP/1.1",
            Refusal::Body => "WebSocket upgrade request must not carry a body",
            Refusal::BadKey => "Missing or invalid Sec-WebSocket-Key header",
            Refusal::DuplicateKey => "More than one Sec-WebSocket-Key header",
            Refusal::BadVersion => "Unsupported WebSocket version (supported: 13, 8, 7)",
            Refusal::DuplicateVersion => "More than one Sec-WebSocket-Version header",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// Whether the request asks for a WebSocket (`Upgrade: websocket`, case-insensitive, as the
/// reference: it does not insist on `Connection: Upgrade`).
pub fn wants_websocket(headers: &HeaderMap) -> bool {
    headers
        .get_all(hyper::header::UPGRADE)
        .iter()
        .any(|v| has_token(v, "websocket"))
}

/// Checks an upgrade request and decides the answer.
pub fn check(method: &Method, version: Version, headers: &HeaderMap) -> Result<Upgrade, Refusal> {
    if method != Method::GET {
        return Err(Refusal::NotGet);
    }
    if version < Version::HTTP_11 {
        return Err(Refusal::OldHttp);
    }
    let empty_body = headers
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .all(|v| v.as_bytes().trim_ascii() == b"0");
    if !empty_body || headers.contains_key(header::TRANSFER_ENCODING) {
        return Err(Refusal::Body);
    }
    let version = single(headers, "sec-websocket-version").ok_or(Refusal::DuplicateVersion)?;
    let version_ok = version
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| matches!(v.trim(), "13" | "8" | "7"));
    if !version_ok {
        return Err(Refusal::BadVersion);
    }
    let key = single(headers, "sec-websocket-key")
        .ok_or(Refusal::DuplicateKey)?
        .map(|v| v.as_bytes().trim_ascii())
        .filter(|k| is_valid_key(k))
        .ok_or(Refusal::BadKey)?;
    let (protocol, mode) = select_protocol(headers);
    Ok(Upgrade {
        accept: accept_key(key),
        protocol,
        mode,
    })
}

/// The value of a header that may appear at most once: `None` when it appears more often,
/// `Some(None)` when absent.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Option<Option<&'a HeaderValue>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    match values.next() {
        Some(_) => None,
        None => Some(first),
    }
}

/// The 101 answer for a checked upgrade.
pub fn switching_protocols(upgrade: &Upgrade) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&upgrade.accept) {
        headers.insert("sec-websocket-accept", accept);
    }
    if let Some(protocol) = upgrade.protocol {
        headers.insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
    }
    response
}

/// `binary` anywhere in the offered list wins; else `base64`; else no protocol header, binary.
/// Unknown protocols are not refused (the reference answers 400; its users keep tripping on it).
pub fn select_protocol(headers: &HeaderMap) -> (Option<&'static str>, Mode) {
    let mut base64 = false;
    for value in headers.get_all("sec-websocket-protocol") {
        let Ok(list) = value.to_str() else { continue };
        for offered in list.split(',').map(str::trim) {
            if offered == "binary" {
                return (Some("binary"), Mode::Binary);
            }
            base64 |= offered == "base64";
        }
    }
    if base64 {
        (Some("base64"), Mode::Base64)
    } else {
        (None, Mode::Binary)
    }
}

/// `Sec-WebSocket-Accept` for a client key.
pub fn accept_key(key: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(WEBSOCKET_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ctx.finish())
}

/// A key is the base64 encoding of 16 bytes (RFC 6455 §4.1).
fn is_valid_key(key: &[u8]) -> bool {
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|raw| raw.len() == 16)
}

fn has_token(value: &HeaderValue, token: &str) -> bool {
    value.to_str().is_ok_and(|v| {
        v.split(',')
            .any(|part| part.trim().eq_ignore_ascii_case(token))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn accept_key_matches_the_rfc_vector() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(
            accept_key(b"DKURYVK9cRFul1vOZVA56Q=="),
            "pczpYSQsvE1vBpTQYjFQPcuoj6M="
        );
    }

    #[test]
    fn protocol_selection() {
        let pick = |v: &'static str| select_protocol(&headers(&[("sec-websocket-protocol", v)]));
        assert_eq!(pick("binary"), (Some("binary"), Mode::Binary));
        assert_eq!(pick("base64, binary"), (Some("binary"), Mode::Binary));
        assert_eq!(pick(" base64 "), (Some("base64"), Mode::Base64));
        assert_eq!(pick("chat, superchat"), (None, Mode::Binary));
        assert_eq!(select_protocol(&HeaderMap::new()), (None, Mode::Binary));
        let two = headers(&[
            ("sec-websocket-protocol", "chat"),
            ("sec-websocket-protocol", "binary"),
        ]);
        assert_eq!(select_protocol(&two), (Some("binary"), Mode::Binary));
    }

    #[test]
    fn refusals() {
        let good = [
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "DKURYVK9cRFul1vOZVA56Q=="),
        ];
        assert!(check(&Method::GET, Version::HTTP_11, &headers(&good)).is_ok());
        assert_eq!(
            check(&Method::POST, Version::HTTP_11, &headers(&good)),
            Err(Refusal::NotGet)
        );
        assert_eq!(
            check(&Method::GET, Version::HTTP_11, &headers(&good[..2])),
            Err(Refusal::BadKey)
        );
        let bad_version = [good[0], ("sec-websocket-version", "12"), good[2]];
        assert_eq!(
            check(&Method::GET, Version::HTTP_11, &headers(&bad_version)),
            Err(Refusal::BadVersion)
        );
        let short_key = [good[0], good[1], ("sec-websocket-key", "c2hvcnQ=")];
        assert_eq!(
            check(&Method::GET, Version::HTTP_11, &headers(&short_key)),
            Err(Refusal::BadKey)
        );
        assert!(wants_websocket(&headers(&[("upgrade", "WebSocket")])));
        assert!(!wants_websocket(&headers(&[("upgrade", "h2c")])));
    }

    const GOOD: [(&str, &str); 3] = [
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "DKURYVK9cRFul1vOZVA56Q=="),
    ];

    fn check_with(
        version: Version,
        extra: &[(&'static str, &'static str)],
    ) -> Result<Upgrade, Refusal> {
        let mut all = GOOD.to_vec();
        all.extend_from_slice(extra);
        check(&Method::GET, version, &headers(&all))
    }

    /// Each refusal at its edge: HTTP/1.0 but not 2, a body announced either way but not an
    /// explicit empty one, a header given twice, a key that is 24 characters but not 16 bytes.
    #[test]
    fn refusals_at_their_edges() {
        let ok = check_with(Version::HTTP_11, &[]).unwrap();
        assert_eq!(ok.accept, "pczpYSQsvE1vBpTQYjFQPcuoj6M=");
        assert_eq!((ok.protocol, ok.mode), (None, Mode::Binary));
        assert_eq!(
            check_with(Version::HTTP_10, &[]).err(),
            Some(Refusal::OldHttp)
        );
        assert!(check_with(Version::HTTP_2, &[]).is_ok());
        assert!(check_with(Version::HTTP_11, &[("content-length", " 0 ")]).is_ok());
        for body in [("content-length", "5"), ("transfer-encoding", "chunked")] {
            assert_eq!(
                check_with(Version::HTTP_11, &[body]).err(),
                Some(Refusal::Body)
            );
        }
        let twice_key = [("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")];
        assert_eq!(
            check_with(Version::HTTP_11, &twice_key).err(),
            Some(Refusal::DuplicateKey)
        );
        let twice_version = [("sec-websocket-version", "13")];
        assert_eq!(
            check_with(Version::HTTP_11, &twice_version).err(),
            Some(Refusal::DuplicateVersion)
        );
        for version in ["8", " 7 "] {
            let h = headers(&[GOOD[0], ("sec-websocket-version", version), GOOD[2]]);
            assert!(
                check(&Method::GET, Version::HTTP_11, &h).is_ok(),
                "{version}"
            );
        }
        let h = headers(&[GOOD[0], GOOD[2]]);
        assert_eq!(
            check(&Method::GET, Version::HTTP_11, &h).err(),
            Some(Refusal::BadVersion)
        );
        // 24 characters that are not base64, and 24 that decode to 18 bytes.
        for key in ["!!!!!!!!!!!!!!!!!!!!!!!!", "AAAAAAAAAAAAAAAAAAAAAAAA"] {
            let h = headers(&[GOOD[0], GOOD[1], ("sec-websocket-key", key)]);
            assert_eq!(
                check(&Method::GET, Version::HTTP_11, &h).err(),
                Some(Refusal::BadKey)
            );
        }
    }

    #[test]
    fn protocol_selection_picks_base64_only_when_offered() {
        let h = headers(&[("sec-websocket-protocol", "chat, base64")]);
        assert_eq!(select_protocol(&h), (Some("base64"), Mode::Base64));
        let h = headers(&[("sec-websocket-protocol", "base64x, xbinary")]);
        assert_eq!(select_protocol(&h), (None, Mode::Binary));
        let h = headers(&[
            ("sec-websocket-protocol", "base64"),
            ("sec-websocket-protocol", "chat"),
        ]);
        assert_eq!(select_protocol(&h), (Some("base64"), Mode::Base64));
    }

    #[test]
    fn upgrade_token_is_found_in_a_list() {
        assert!(wants_websocket(&headers(&[("upgrade", "h2c, websocket")])));
        assert!(wants_websocket(&headers(&[
            ("upgrade", "h2c"),
            ("upgrade", "websocket")
        ])));
        assert!(!wants_websocket(&headers(&[("upgrade", "websockets")])));
        assert!(!wants_websocket(&HeaderMap::new()));
    }

    #[test]
    fn the_101_carries_accept_and_protocol_and_reasons_are_distinct() {
        let upgrade =
            check_with(Version::HTTP_11, &[("sec-websocket-protocol", "binary")]).unwrap();
        let response = switching_protocols(&upgrade);
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        let h = response.headers();
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "Upgrade");
        assert_eq!(h["sec-websocket-accept"], "pczpYSQsvE1vBpTQYjFQPcuoj6M=");
        assert_eq!(h["sec-websocket-protocol"], "binary");
        let plain = switching_protocols(&check_with(Version::HTTP_11, &[]).unwrap());
        assert!(!plain.headers().contains_key("sec-websocket-protocol"));
        assert_eq!(Refusal::BadKey.to_string(), Refusal::BadKey.reason());
        assert!(Refusal::BadKey.reason().contains("Sec-WebSocket-Key"));
        assert!(Refusal::NotGet.reason().contains("GET"));
    }
}
