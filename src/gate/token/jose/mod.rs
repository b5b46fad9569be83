//! jose: the pure decoder of `JWTTokenApi` tokens: a compact JWS, a compact JWE whose
//! plaintext is the claims, or a JWS nested in a JWE (one level), all with one [`Key`]. Takes
//! a token and a key, returns the claims or why not; no I/O, no clock (the claims' times are
//! the plugin's business), so it is fuzzed as it is (`fuzz/fuzz_targets/jwt.rs`).
//!
//! Refused before any cryptography: a token over [`MAX_TOKEN`]; `alg: none`; an `alg` the key's
//! type cannot serve (HS256 with an RSA public key is not "HMAC keyed with the PEM text"); a
//! `crit` header (we implement no extension); `zip` (never inflated). MACs and tags are
//! compared in constant time (`hmac`'s `verify_*`, the AEADs); a failed RSA-OAEP decryption
//! goes on with a random key, so it fails where a wrong tag fails (RFC 7516 §11.5); the
//! RSA private-key operation is rsa 0.10's constant-time one.

mod jwe;
mod jws;
pub mod key;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

pub use key::Key;

/// The longest token decoded. A token arrives in the request line or the Host header, which
/// the HTTP head's limit (16 KiB) bounds already; the decoder keeps its own bound so it is safe
/// standing alone (the fuzz target calls it directly).
pub const MAX_TOKEN: usize = 16 * 1024;

/// Why a token was refused: a fixed phrase for the log (never the token's own text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal(pub &'static str);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

type Result<T> = std::result::Result<T, Refusal>;

/// The claims of `token`, verified (and decrypted) with `key`.
pub fn decode(token: &str, key: &Key) -> Result<Map<String, Value>> {
    if token.len() > MAX_TOKEN {
        return Err(Refusal("the token is too long"));
    }
    let parts: Vec<&str> = token.split('.').collect();
    match parts.len() {
        3 => claims(&jws::verify(&parts, key)?),
        5 => {
            let plaintext = jwe::decrypt(&parts, key)?;
            if plaintext.first() == Some(&b'{') {
                return claims(&plaintext);
            }
            // A nested JWT: its compact JWS, signed with the same key.
            let inner = std::str::from_utf8(&plaintext)
                .map_err(|_| Refusal("the JWE's plaintext is neither claims nor a JWS"))?;
            let parts: Vec<&str> = inner.split('.').collect();
            match parts.len() {
                3 => claims(&jws::verify(&parts, key)?),
                5 => Err(Refusal("a JWE nested in a JWE")),
                _ => Err(Refusal("the JWE's plaintext is neither claims nor a JWS")),
            }
        }
        _ => Err(Refusal("not a compact JWS or JWE")),
    }
}

/// Whether decoding `token` with `key` is cheap enough to run on a runtime thread: a compact
/// JWS (a MAC or a public-key verify, never a private-key operation) under a key whose verify
/// takes well under 100 µs: HMAC, Ed25519 (~60 µs), RSA through ring up to 3072 bits (~35 µs
/// at 2048). Not a JWE (an RSA-OAEP or ECDH-ES private-key operation, up to milliseconds), nor
/// the slower verifies: ECDSA with the RustCrypto curves (~0.5 ms at P-256, ~1 ms at P-521),
/// RSA with the rsa crate or past 3072 bits. Those go to the blocking pool.
pub fn cheap(token: &str, key: &Key) -> bool {
    let jws = token.bytes().filter(|&byte| byte == b'.').count() == 2;
    jws && match key {
        Key::Oct(_) | Key::Ed25519(_) => true,
        Key::Rsa {
            ring: Some(ring), ..
        } => ring.n.len() <= 3072 / 8,
        _ => false,
    }
}

fn claims(payload: &[u8]) -> Result<Map<String, Value>> {
    match serde_json::from_slice(payload) {
        Ok(Value::Object(claims)) => Ok(claims),
        _ => Err(Refusal("the claims are not a JSON object")),
    }
}

/// One part of a compact serialization: base64url without padding, strictly.
fn part(text: &str) -> Result<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| Refusal("a part is not base64url"))
}

/// The protected header: a JSON object with a string `alg`, no `crit`, no `zip`.
fn header(text: &str) -> Result<Map<String, Value>> {
    let Ok(Value::Object(header)) = serde_json::from_slice(&part(text)?) else {
        return Err(Refusal("the header is not a JSON object"));
    };
    if header.contains_key("crit") {
        return Err(Refusal("the header names critical extensions (crit)"));
    }
    if header.contains_key("zip") {
        return Err(Refusal("compressed (zip) tokens are refused"));
    }
    Ok(header)
}

fn string<'a>(header: &'a Map<String, Value>, name: &'static str) -> Result<&'a str> {
    header
        .get(name)
        .and_then(Value::as_str)
        .ok_or(Refusal("the header lacks a string alg or enc"))
}

/// The refusal of an `alg` the key's type cannot serve.
const WRONG_KEY: Refusal = Refusal("the alg does not fit the key's type");
