//! handshake: the RFC 6455 server handshake as pure functions over request headers: is this an
//! upgrade, is it well-formed, which subprotocol do we answer, what is the accept key.

use base64::Engine as _;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::Method;

use crate::relay::Mode;

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

/// Why an upgrade request is refused: answered with HTTP 400 and this text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("WebSocket upgrade needs a GET request")]
    NotGet,
    #[error("Missing or invalid Sec-WebSocket-Key header")]
    BadKey,
    #[error("Unsupported WebSocket version (supported: 13, 8, 7)")]
    BadVersion,
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
pub fn check(method: &Method, headers: &HeaderMap) -> Result<Upgrade, Refusal> {
    if method != Method::GET {
        return Err(Refusal::NotGet);
    }
    let version_ok = headers
        .get("sec-websocket-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| matches!(v.trim(), "13" | "8" | "7"));
    if !version_ok {
        return Err(Refusal::BadVersion);
    }
    let key = headers
        .get("sec-websocket-key")
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
        assert!(check(&Method::GET, &headers(&good)).is_ok());
        assert_eq!(check(&Method::POST, &headers(&good)), Err(Refusal::NotGet));
        assert_eq!(
            check(&Method::GET, &headers(&good[..2])),
            Err(Refusal::BadKey)
        );
        let bad_version = [good[0], ("sec-websocket-version", "12"), good[2]];
        assert_eq!(
            check(&Method::GET, &headers(&bad_version)),
            Err(Refusal::BadVersion)
        );
        let short_key = [good[0], good[1], ("sec-websocket-key", "c2hvcnQ=")];
        assert_eq!(
            check(&Method::GET, &headers(&short_key)),
            Err(Refusal::BadKey)
        );
        assert!(wants_websocket(&headers(&[("upgrade", "WebSocket")])));
        assert!(!wants_websocket(&headers(&[("upgrade", "h2c")])));
    }
}
