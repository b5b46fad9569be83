//! `BasicHTTPAuth`: the request must carry `Authorization: Basic` with the one
//! `USER:PASSWORD` of `--auth-source`, as the reference's plugin:
//!
//! - no `Authorization` header (or an empty one), or other credentials: 401 with
//!   `WWW-Authenticate: Basic realm="Websockify"`, so that a browser asks for them;
//! - a header that is not `Basic ` followed by base64 of text with a `:`: 403. The scheme is
//!   matched as the reference does, case and single space included (browsers and curl send
//!   exactly `Basic `). Base64 is strict here; the reference's lenient decoder skips stray
//!   characters, and drops the connection without an answer on bad padding.
//!
//! The credentials are decoded as ISO-8859-1 (each byte one character), as the reference, and
//! compared, as text, with the source: `jos\xe9:pw` on the wire matches `--auth-source josé:pw`.
//! The comparison is of SHA-256 digests in constant time (`subtle`), so neither the content nor
//! the length of the password shows in the time a refusal takes; user and password are checked
//! together, so a refusal never says which one was wrong.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hyper::header::AUTHORIZATION;
use hyper::HeaderMap;
use ring::digest::{digest, SHA256};
use subtle::ConstantTimeEq;

use crate::error::{Error, Kind, Side, StartError};

/// The reference's challenge.
pub const CHALLENGE: &str = "Basic realm=\"Websockify\"";

/// `BasicHTTPAuth`, holding the digest of `USER:PASSWORD` (never the password itself).
pub struct BasicHttpAuth {
    expected: [u8; 32],
}

impl fmt::Debug for BasicHttpAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BasicHttpAuth { .. }")
    }
}

impl BasicHttpAuth {
    /// From `--auth-source USER:PASSWORD` (split at the first `:` by clients; the password may
    /// hold more). A missing source, or one without a `:`, could never match: a start-up error
    /// (the reference starts, then refuses everyone). The source is never echoed.
    pub fn new(source: Option<&str>) -> Result<Self, StartError> {
        let Some(source) = source.filter(|s| !s.is_empty()) else {
            return Err(StartError::new(
                "--auth-plugin BasicHTTPAuth needs --auth-source USER:PASSWORD",
            ));
        };
        if !source.contains(':') {
            return Err(StartError::new(
                "--auth-source: BasicHTTPAuth needs USER:PASSWORD, and the value given has no ':'",
            ));
        }
        Ok(BasicHttpAuth {
            expected: sha256(source.as_bytes()),
        })
    }

    pub fn authenticate(&self, headers: &HeaderMap) -> Result<(), Error> {
        let Some(value) = headers.get(AUTHORIZATION).filter(|v| !v.is_empty()) else {
            return Err(demand("Authentication required"));
        };
        let encoded = value
            .as_bytes()
            .strip_prefix(b"Basic ")
            .ok_or_else(malformed)?;
        let decoded = STANDARD
            .decode(encoded.trim_ascii_start())
            .map_err(|_| malformed())?;
        // ISO-8859-1: byte n is U+00nn.
        let text: String = decoded.iter().copied().map(char::from).collect();
        if !text.contains(':') {
            return Err(malformed());
        }
        if bool::from(sha256(text.as_bytes()).ct_eq(&self.expected)) {
            Ok(())
        } else {
            Err(demand("Invalid credentials"))
        }
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

/// 401 with the challenge: a browser then asks its user.
fn demand(why: &'static str) -> Error {
    Error::new(Side::Client, Kind::Unauthorized(CHALLENGE), why)
}

/// 403: the header is not Basic credentials at all.
fn malformed() -> Error {
    Error::new(
        Side::Client,
        Kind::Forbidden,
        "Malformed Authorization header",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(plugin: &BasicHttpAuth, authorization: Option<&[u8]>) -> Result<(), Error> {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(AUTHORIZATION, value.try_into().unwrap());
        }
        plugin.authenticate(&headers)
    }

    fn basic(credentials: &[u8]) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(credentials)).into_bytes()
    }

    fn status(result: Result<(), Error>) -> u16 {
        match result {
            Ok(()) => 101,
            Err(err) => err.status(),
        }
    }

    #[test]
    fn only_the_exact_user_and_password_pass() {
        let plugin = BasicHttpAuth::new(Some("alice:pa:ss")).unwrap();
        assert_eq!(status(check(&plugin, Some(&basic(b"alice:pa:ss")))), 101);
        for wrong in [
            &b"alice:pa:s"[..],
            b"alice:pa:ssx",
            b"alicex:pa:ss",
            b"Alice:pa:ss",
            b"alice:",
            b":pa:ss",
            b"bob:pa:ss",
        ] {
            let err = check(&plugin, Some(&basic(wrong))).unwrap_err();
            assert_eq!(err.status(), 401, "{wrong:?}");
            assert_eq!(err.challenge(), Some(CHALLENGE));
        }
    }

    #[test]
    fn no_credentials_ask_for_them() {
        let plugin = BasicHttpAuth::new(Some("u:p")).unwrap();
        for missing in [None, Some(&b""[..])] {
            let err = check(&plugin, missing).unwrap_err();
            assert_eq!((err.status(), err.challenge()), (401, Some(CHALLENGE)));
            assert_eq!(err.context, "Authentication required");
        }
    }

    #[test]
    fn a_header_that_is_not_basic_credentials_is_forbidden() {
        let plugin = BasicHttpAuth::new(Some("u:p")).unwrap();
        for bad in [
            &b"Bearer dTpw"[..],
            b"basic dTpw",
            b"Basic",
            b"Basicx dTpw",
            b"Basic dTp",
            b"Basic !!!!",
            b"Basic dXA=", // "up": no colon
            b"Basic \xe9\xe9\xe9\xe9",
        ] {
            let err = check(&plugin, Some(bad)).unwrap_err();
            assert_eq!(
                (err.status(), err.challenge()),
                (403, None),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Spaces before the base64 are skipped, as the reference's decoder does.
        assert_eq!(status(check(&plugin, Some(b"Basic   dTpw"))), 101);
    }

    #[test]
    fn credentials_are_iso_8859_1() {
        let plugin = BasicHttpAuth::new(Some("josé:pässwörd")).unwrap();
        assert_eq!(
            status(check(&plugin, Some(&basic(b"jos\xe9:p\xe4ssw\xf6rd")))),
            101
        );
        // The same text in UTF-8 is other characters in ISO-8859-1.
        assert_eq!(
            status(check(&plugin, Some(&basic("josé:pässwörd".as_bytes())))),
            401
        );
    }
}
