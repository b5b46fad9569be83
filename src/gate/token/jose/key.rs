//! key: the `JWTTokenApi` key file, read as the reference reads it (jwcrypto's
//! `import_from_pem`, else `import_key(k=<the file's text>, kty='oct')`): a PEM private key,
//! public key or certificate; otherwise the file's text is a JWK `k`, base64url decoded as
//! Python decodes it (leniently: [`python_b64url`]).
//!
//! Unlike the reference, a file that looks like PEM but is not a key we can use is a start-up
//! error (the reference would take the PEM text as an HMAC secret), and so is a text that is
//! not base64url (the reference then refuses every token, saying so at each lookup).

use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::der::pem;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::{PrivateKey as RsaPrivateKey, PublicKey as RsaPublicKey};

/// The key every token is checked (and decrypted) with. Its type decides which algorithms a
/// token may name: an `alg` of another family is refused before any cryptography runs.
pub enum Key {
    /// A symmetric key: `HS*`, `A*KW`, `dir`.
    Oct(Vec<u8>),
    /// `RS*`, `PS*`; with the private key also `RSA-OAEP(-256)`.
    Rsa {
        public: RsaPublicKey,
        /// The key as ring verifies it, when ring takes it ([`ring_verifiable`]).
        ring: Option<RingRsa>,
        private: Option<Box<RsaPrivateKey>>,
    },
    /// `ES256`; with the private key also `ECDH-ES(+A*KW)` on P-256.
    P256 {
        public: p256::PublicKey,
        secret: Option<p256::SecretKey>,
    },
    P384 {
        public: p384::PublicKey,
        secret: Option<p384::SecretKey>,
    },
    P521 {
        public: p521::PublicKey,
        secret: Option<p521::SecretKey>,
    },
    /// `EdDSA` (Ed25519).
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl std::fmt::Debug for Key {
    /// Never the key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

impl Key {
    /// The key of a key file's bytes; the error says why it is not one (for a start-up
    /// message naming the file).
    pub fn from_file(data: &[u8]) -> Result<Key, String> {
        if let Some(start) = find(data, b"-----BEGIN ") {
            return from_pem(&data[start..]);
        }
        let text = std::str::from_utf8(data)
            .map_err(|_| "neither PEM nor a symmetric key: not UTF-8 text".to_owned())?;
        let key = python_b64url(text).ok_or_else(|| {
            "neither PEM nor a symmetric key: its text is not base64url (the reference reads a \
             key file that is not PEM as a JWK \"k\", base64url encoded)"
                .to_owned()
        })?;
        if key.is_empty() {
            return Err("the symmetric key is empty".to_owned());
        }
        Ok(Key::Oct(key))
    }

    /// What kind of key this is, for the start-up line.
    pub fn describe(&self) -> &'static str {
        match self {
            Key::Oct(_) => "symmetric key",
            Key::Rsa {
                private: Some(_), ..
            } => "RSA private key",
            Key::Rsa { private: None, .. } => "RSA public key",
            Key::P256 {
                secret: Some(_), ..
            } => "EC P-256 private key",
            Key::P256 { secret: None, .. } => "EC P-256 public key",
            Key::P384 {
                secret: Some(_), ..
            } => "EC P-384 private key",
            Key::P384 { secret: None, .. } => "EC P-384 public key",
            Key::P521 {
                secret: Some(_), ..
            } => "EC P-521 private key",
            Key::P521 { secret: None, .. } => "EC P-521 public key",
            Key::Ed25519(_) => "Ed25519 key",
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The first PEM block of the file, which must be a key (or certificate) we can use.
fn from_pem(data: &[u8]) -> Result<Key, String> {
    let (label, der) = first_block(data)?;
    let unusable = |what: &str| format!("a PEM \"{label}\" that is not {what}");
    match label.as_str() {
        "PRIVATE KEY" => private_pkcs8(&der)
            .ok_or_else(|| unusable("an RSA, EC (P-256, P-384, P-521) or Ed25519 private key")),
        "RSA PRIVATE KEY" => RsaPrivateKey::from_pkcs1_der(&der)
            .map(rsa_private)
            .map_err(|_| unusable("an RSA private key")),
        "EC PRIVATE KEY" => {
            private_sec1(&der).ok_or_else(|| unusable("an EC private key on P-256, P-384 or P-521"))
        }
        "PUBLIC KEY" => public_spki(&der)
            .ok_or_else(|| unusable("an RSA, EC (P-256, P-384, P-521) or Ed25519 public key")),
        "RSA PUBLIC KEY" => RsaPublicKey::from_pkcs1_der(&der)
            .map(|public| rsa_key(public, None))
            .map_err(|_| unusable("an RSA public key")),
        "CERTIFICATE" => {
            let spki = certificate_spki(&der).ok_or_else(|| unusable("a certificate"))?;
            public_spki(&spki).ok_or_else(|| {
                unusable("a certificate of an RSA, EC (P-256, P-384, P-521) or Ed25519 key")
            })
        }
        "ENCRYPTED PRIVATE KEY" => {
            Err("an encrypted private key (the reference reads keys without a password too)".into())
        }
        _ => Err(format!("a PEM \"{label}\", not a key")),
    }
}

fn first_block(data: &[u8]) -> Result<(String, Vec<u8>), String> {
    const END: &[u8] = b"-----END ";
    let end = find(data, END).ok_or("a PEM block without its END line")?;
    let tail = &data[end + END.len()..];
    let close = find(tail, b"-----").ok_or("a PEM block without its END line")?;
    let block = &data[..end + END.len() + close + 5];
    let (label, der) = pem::decode_vec(block).map_err(|err| format!("malformed PEM: {err}"))?;
    Ok((label.to_owned(), der))
}

fn rsa_private(private: RsaPrivateKey) -> Key {
    rsa_key(private.to_public_key(), Some(Box::new(private)))
}

fn rsa_key(public: RsaPublicKey, private: Option<Box<RsaPrivateKey>>) -> Key {
    Key::Rsa {
        ring: ring_verifiable(&public),
        public,
        private,
    }
}

/// An RSA public key as ring verifies signatures with it: modulus and exponent, big-endian.
pub type RingRsa = ring::signature::RsaPublicKeyComponents<Box<[u8]>>;

/// The key for ring, if ring verifies with it: ring's RS* and PS* take moduli of 2048 to 8192
/// bits and odd exponents of 3 to 2^33 - 1, and verify several times faster than the rsa
/// crate. The rsa crate keeps the others: the reference verifies with a 1024-bit key too.
pub fn ring_verifiable(public: &RsaPublicKey) -> Option<RingRsa> {
    use rsa::traits::PublicKeyParts;
    let (n, e) = (public.n_bytes(), public.e_bytes());
    let odd = |bytes: &[u8]| bytes.last().is_some_and(|last| last & 1 == 1);
    let exponent = (e.len() <= 5).then(|| e.iter().fold(0u64, |v, &b| v << 8 | u64::from(b)));
    let fits = (256..=1024).contains(&n.len())
        && n.first().is_some_and(|&first| first != 0)
        && odd(&n)
        && odd(&e)
        && exponent.is_some_and(|e| (3..1 << 33).contains(&e));
    fits.then_some(RingRsa { n, e })
}

fn private_pkcs8(der: &[u8]) -> Option<Key> {
    if let Ok(private) = RsaPrivateKey::from_pkcs8_der(der) {
        return Some(rsa_private(private));
    }
    if let Ok(secret) = p256::SecretKey::from_pkcs8_der(der) {
        return Some(Key::P256 {
            public: secret.public_key(),
            secret: Some(secret),
        });
    }
    if let Ok(secret) = p384::SecretKey::from_pkcs8_der(der) {
        return Some(Key::P384 {
            public: secret.public_key(),
            secret: Some(secret),
        });
    }
    if let Ok(secret) = p521::SecretKey::from_pkcs8_der(der) {
        return Some(Key::P521 {
            public: secret.public_key(),
            secret: Some(secret),
        });
    }
    ed25519_dalek::SigningKey::from_pkcs8_der(der)
        .ok()
        .map(|signing| Key::Ed25519(signing.verifying_key()))
}

fn private_sec1(der: &[u8]) -> Option<Key> {
    if let Ok(secret) = p256::SecretKey::from_sec1_der(der) {
        return Some(Key::P256 {
            public: secret.public_key(),
            secret: Some(secret),
        });
    }
    if let Ok(secret) = p384::SecretKey::from_sec1_der(der) {
        return Some(Key::P384 {
            public: secret.public_key(),
            secret: Some(secret),
        });
    }
    p521::SecretKey::from_sec1_der(der)
        .ok()
        .map(|secret| Key::P521 {
            public: secret.public_key(),
            secret: Some(secret),
        })
}

fn public_spki(der: &[u8]) -> Option<Key> {
    if let Ok(public) = RsaPublicKey::from_public_key_der(der) {
        return Some(rsa_key(public, None));
    }
    if let Ok(public) = p256::PublicKey::from_public_key_der(der) {
        return Some(Key::P256 {
            public,
            secret: None,
        });
    }
    if let Ok(public) = p384::PublicKey::from_public_key_der(der) {
        return Some(Key::P384 {
            public,
            secret: None,
        });
    }
    if let Ok(public) = p521::PublicKey::from_public_key_der(der) {
        return Some(Key::P521 {
            public,
            secret: None,
        });
    }
    ed25519_dalek::VerifyingKey::from_public_key_der(der)
        .ok()
        .map(Key::Ed25519)
}

/// The DER of a certificate's SubjectPublicKeyInfo.
fn certificate_spki(der: &[u8]) -> Option<Vec<u8>> {
    use x509_cert::der::{Decode, Encode};
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    cert.tbs_certificate.subject_public_key_info.to_der().ok()
}

/// jwcrypto's `base64url_decode` of a str: pad to a multiple of 4 by its length in code
/// points (a length of 1 modulo 4 is an error), then CPython's non-strict `a2b_base64` after
/// the URL-safe translation: characters outside the alphabet are skipped, decoding stops at
/// complete padding, and a final group of 2 or 3 characters without enough `=` is "Incorrect
/// padding". So `"abcd\n"` (5 code points) is refused and `"ab cd"` decodes as `"abcd"`.
pub fn python_b64url(text: &str) -> Option<Vec<u8>> {
    let pad = match text.chars().count() % 4 {
        0 => "",
        2 => "==",
        3 => "=",
        _ => return None,
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 3);
    let (mut quad, mut pads, mut left) = (0u8, 0u8, 0u32);
    for byte in text.bytes().chain(pad.bytes()) {
        if byte == b'=' {
            if quad >= 2 {
                pads += 1;
                if quad + pads >= 4 {
                    return Some(out);
                }
            }
            continue;
        }
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => continue,
        } as u32;
        pads = 0;
        match quad {
            0 => {
                left = value;
                quad = 1;
            }
            1 => {
                out.push(((left << 2) | (value >> 4)) as u8);
                left = value & 0x0f;
                quad = 2;
            }
            2 => {
                out.push(((left << 4) | (value >> 2)) as u8);
                left = value & 0x03;
                quad = 3;
            }
            _ => {
                out.push(((left << 6) | value) as u8);
                quad = 0;
            }
        }
    }
    (quad == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values from CPython 3.11 + jwcrypto 1.6.1 (`base64url_decode`).
    #[test]
    fn symmetric_keys_decode_as_python_decodes_them() {
        assert_eq!(python_b64url("YWJj").unwrap(), b"abc");
        assert_eq!(python_b64url("YWI").unwrap(), b"ab");
        assert_eq!(python_b64url("YQ").unwrap(), b"a");
        assert_eq!(python_b64url("").unwrap(), b"");
        // 5 code points: "Invalid base64 string".
        assert_eq!(python_b64url("YWJj\n"), None);
        // 23 characters, 22 of the alphabet: "Incorrect padding".
        assert_eq!(python_b64url("AAAAAAAAAAAAAAAAAAAAAA\n"), None);
        // Skipped: the space, the comma; "-" and "_" and "+" and "/" all count.
        assert_eq!(
            python_b64url("sesame, open up").unwrap(),
            b"\xb1\xeb\x1a\x99\xea)z{\xa9"
        );
        assert_eq!(python_b64url("-_+/").unwrap(), b"\xfb\xff\xbf");
        // Decoding stops at complete padding.
        assert_eq!(python_b64url("YQ==YWJj").unwrap(), b"a");
        // A non-ASCII character is one code point but several skipped bytes.
        assert_eq!(python_b64url("YWJjé"), None);
        assert_eq!(python_b64url("YWJjéé"), python_b64url("YWJj=="));
    }

    #[test]
    fn the_pem_of_a_certificate_request_is_not_a_key() {
        let pem = b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n";
        let err = Key::from_file(pem).unwrap_err();
        assert!(err.contains("CERTIFICATE REQUEST"), "{err}");
    }

    fn fixture(name: &str) -> Vec<u8> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt");
        std::fs::read(dir.join(name)).unwrap()
    }

    /// The claims of jwcrypto's token `name` (tests/fixtures/jwt/tokens.json) under `key`.
    fn claims_of(
        name: &str,
        key: &Key,
    ) -> Result<serde_json::Map<String, serde_json::Value>, super::super::Refusal> {
        let text = String::from_utf8(fixture("tokens.json")).unwrap();
        let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        let case = cases.iter().find(|case| case["name"] == name).unwrap();
        super::super::decode(case["token"].as_str().unwrap(), key)
    }

    /// Every PEM form of make.py's keys (make_forms.sh: PKCS#8, PKCS#1, SEC1, SPKI, a
    /// certificate) is read as a key of its kind, and the same key: it verifies the token
    /// jwcrypto signed with the original.
    #[test]
    fn every_pem_form_is_read_as_the_key_it_holds() {
        for (file, kind, token) in [
            ("rsa.pem", "RSA private key", "jws-RS256"),
            ("rsa.pkcs1.pem", "RSA private key", "jws-RS256"),
            ("rsa.pub.pem", "RSA public key", "jws-RS256"),
            ("rsa.pkcs1.pub.pem", "RSA public key", "jws-RS256"),
            ("ec256.pem", "EC P-256 private key", "jws-ES256"),
            ("ec256.sec1.pem", "EC P-256 private key", "jws-ES256"),
            ("ec256.pub.pem", "EC P-256 public key", "jws-ES256"),
            ("ec256.crt", "EC P-256 public key", "jws-ES256"),
            ("ec384.pem", "EC P-384 private key", "jws-ES384"),
            ("ec384.sec1.pem", "EC P-384 private key", "jws-ES384"),
            ("ec384.pub.pem", "EC P-384 public key", "jws-ES384"),
            ("ec521.pem", "EC P-521 private key", "jws-ES512"),
            ("ec521.sec1.pem", "EC P-521 private key", "jws-ES512"),
            ("ec521.pub.pem", "EC P-521 public key", "jws-ES512"),
            ("ed25519.pem", "Ed25519 key", "jws-EdDSA"),
            ("ed25519.pub.pem", "Ed25519 key", "jws-EdDSA"),
            ("oct32.key", "symmetric key", "jws-HS256"),
        ] {
            let key = Key::from_file(&fixture(file)).unwrap_or_else(|err| panic!("{file}: {err}"));
            assert_eq!(key.describe(), kind, "{file}");
            assert_eq!(format!("{key:?}"), kind, "{file}");
            assert!(claims_of(token, &key).is_ok(), "{file}: {token}");
        }
    }

    /// Each kind of PEM block that holds no key we can use is refused with its own reason
    /// (real DER under the wrong label: a certificate's where a key belongs, a public key's
    /// where a certificate belongs).
    #[test]
    fn pem_blocks_without_a_usable_key_are_refused_each_for_its_reason() {
        let relabel = |file: &str, from: &str, to: &str| {
            String::from_utf8(fixture(file))
                .unwrap()
                .replace(&format!(" {from}-----"), &format!(" {to}-----"))
                .into_bytes()
        };
        let cert = |to: &str| relabel("ec256.crt", "CERTIFICATE", to);
        for (data, why) in [
            (
                cert("PRIVATE KEY"),
                "a PEM \"PRIVATE KEY\" that is not an RSA, EC",
            ),
            (cert("RSA PRIVATE KEY"), "that is not an RSA private key"),
            (cert("EC PRIVATE KEY"), "that is not an EC private key"),
            (
                cert("PUBLIC KEY"),
                "a PEM \"PUBLIC KEY\" that is not an RSA, EC",
            ),
            (cert("RSA PUBLIC KEY"), "that is not an RSA public key"),
            (
                relabel("ec256.pub.pem", "PUBLIC KEY", "CERTIFICATE"),
                "that is not a certificate",
            ),
            (
                fixture("ed448.crt"),
                "that is not a certificate of an RSA, EC",
            ),
            (cert("ENCRYPTED PRIVATE KEY"), "an encrypted private key"),
            (cert("X509 CRL"), "a PEM \"X509 CRL\", not a key"),
            (
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n".to_vec(),
                "without its END line",
            ),
            (
                b"-----BEGIN X-----\nAAAA\n-----END X".to_vec(),
                "without its END line",
            ),
            (
                b"-----BEGIN X-----\n!!!!\n-----END X-----\n".to_vec(),
                "malformed PEM",
            ),
        ] {
            let err = Key::from_file(&data).unwrap_err();
            assert!(err.contains(why), "{why}: {err}");
        }
    }

    /// The first PEM block counts, wherever it starts and whatever follows it.
    #[test]
    fn the_first_pem_block_is_the_key_wherever_it_starts() {
        let mut data = b"a comment before the key\n".to_vec();
        data.extend(fixture("ed25519.pub.pem"));
        data.extend(fixture("rsa.pub.pem"));
        assert_eq!(Key::from_file(&data).unwrap().describe(), "Ed25519 key");
    }

    /// A text that is not PEM is a symmetric key, base64url; empty or undecodable it is
    /// refused.
    #[test]
    fn a_text_that_is_not_pem_is_a_symmetric_key_or_refused() {
        let Key::Oct(key) = Key::from_file(b"YWJj").unwrap() else {
            panic!("not a symmetric key");
        };
        assert_eq!(key, b"abc");
        for (data, why) in [
            (&b""[..], "the symmetric key is empty"),
            (b"!!", "the symmetric key is empty"),
            (b"YWJjZ", "not base64url"),
            (b"\xff\xfe", "not UTF-8"),
        ] {
            let err = Key::from_file(data).unwrap_err();
            assert!(err.contains(why), "{data:?}: {err}");
        }
    }
}
