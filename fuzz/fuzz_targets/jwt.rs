//! `decode_jose`, the JWTTokenApi decoder, with the fixtures' keys. Input: one byte choosing
//! the key ([`KEYS`]), then the token (lossy UTF-8). Properties: no panic, whatever the
//! token; and, checked independently of the decoder from the token's own first part, an
//! accepted token has a JSON header whose `alg` is of the key's family (never `none`, never
//! HS256 with an RSA or EC key: the confusion attack), without `zip` or `crit`, and is no
//! longer than the decoder's bound.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use websockify::codec::{decode_jose, JoseKey, MAX_JOSE_TOKEN};

/// The fixture keys, and the `alg` values each may accept (JWS and JWE key management).
const KEYS: &[(&[u8], &[&str])] = &[
    (
        include_bytes!("../../tests/fixtures/jwt/oct32.key"),
        &["HS256", "A256KW", "dir"],
    ),
    (
        include_bytes!("../../tests/fixtures/jwt/oct16.key"),
        &["A128KW", "dir"],
    ),
    (
        include_bytes!("../../tests/fixtures/jwt/rsa.pem"),
        &[
            "RS256",
            "RS384",
            "RS512",
            "PS256",
            "PS384",
            "PS512",
            "RSA-OAEP",
            "RSA-OAEP-256",
        ],
    ),
    (
        include_bytes!("../../tests/fixtures/jwt/rsa.pub.pem"),
        &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
    ),
    (
        include_bytes!("../../tests/fixtures/jwt/ec256.pem"),
        &[
            "ES256",
            "ECDH-ES",
            "ECDH-ES+A128KW",
            "ECDH-ES+A192KW",
            "ECDH-ES+A256KW",
        ],
    ),
    (
        include_bytes!("../../tests/fixtures/jwt/ed25519.pem"),
        &["EdDSA", "Ed25519"],
    ),
];

fn keys() -> &'static Vec<JoseKey> {
    static KEYS_PARSED: OnceLock<Vec<JoseKey>> = OnceLock::new();
    KEYS_PARSED.get_or_init(|| {
        KEYS.iter()
            .map(|(data, _)| JoseKey::from_file(data).expect("a fixture key"))
            .collect()
    })
}

fn header(part: &str) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()? {
        Value::Object(header) => Some(header),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, token)) = data.split_first() else {
        return;
    };
    let index = choice as usize % KEYS.len();
    let token = String::from_utf8_lossy(token);
    let Ok(_claims) = decode_jose(&token, &keys()[index]) else {
        return;
    };
    assert!(token.len() <= MAX_JOSE_TOKEN);
    let first = token.split('.').next().unwrap_or_default();
    let header = header(first).expect("an accepted token has a JSON object header");
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("?");
    assert!(
        KEYS[index].1.contains(&alg),
        "alg {alg} accepted with key {index}"
    );
    assert!(!header.contains_key("zip") && !header.contains_key("crit"));
});
