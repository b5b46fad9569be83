//! jwt: `JWTTokenApi`. The source is a key file; the token is a JWT whose `host` and `port`
//! claims name the target: a JWS, a JWE of the claims, or a JWS nested in a JWE, all with
//! that one key (the reference's comment: "the key is re-used for both validation and
//! decryption"). `nbf` and `exp`, when present, must be numbers and hold now.
//!
//! The key is read once, at start-up (the reference reads it at every lookup): a missing or
//! unusable key file is a start-up error naming it; a new key needs a restart.
//! A JWE's decoding ([`super::jose`]) runs on the blocking pool: an RSA or EC private-key
//! operation takes milliseconds and must not stall the runtime's workers. A JWS whose verify
//! takes tens of microseconds ([`jose::cheap`]: HMAC, Ed25519, RS*/PS* through ring) is
//! verified in place: the hop to the pool and back (two thread wake-ups) cost about as much
//! CPU as ring's RS256 verify (BENCHMARKS.md, 2026-12-06).
//!
//! Every refusal (malformed, forged, expired, a key that does not fit) is "Token not found"
//! (404), the gate's one line; the reason goes to a debug line, the token to neither.

use std::sync::Arc;

use serde_json::{Map, Value};
use tracing::debug;

use super::api::json_target;
use super::file::blocking;
use super::jose::{self, Key};
use crate::config::TargetSpec;
use crate::error::{Error, StartError};

/// The largest key file read: a PEM certificate chain is a few KiB.
const MAX_KEY_FILE: u64 = 1024 * 1024;

/// `JWTTokenApi`.
#[derive(Debug)]
pub struct JwtTokenApi {
    key: Arc<Key>,
    source: String,
}

impl JwtTokenApi {
    pub fn open(source: &str) -> Result<JwtTokenApi, StartError> {
        let fail = |why: &dyn std::fmt::Display| {
            StartError::new(format!(
                "--token-source {source}: {why} (JWTTokenApi's key file)"
            ))
        };
        let len = std::fs::metadata(source).map_err(|err| fail(&err))?.len();
        if len > MAX_KEY_FILE {
            return Err(fail(&format!("larger than {MAX_KEY_FILE} bytes")));
        }
        let data = std::fs::read(source).map_err(|err| fail(&err))?;
        let key = Key::from_file(&data).map_err(|why| fail(&why))?;
        Ok(JwtTokenApi {
            key: Arc::new(key),
            source: source.to_owned(),
        })
    }

    pub async fn lookup(&self, token: &str) -> Result<Option<Arc<TargetSpec>>, Error> {
        let now = now();
        let found = if jose::cheap(token, &self.key) {
            target(token, &self.key, now)
        } else {
            let key = self.key.clone();
            let token = token.to_owned();
            blocking(move || target(&token, &key, now)).await?
        };
        match found {
            Ok(target) => Ok(Some(Arc::new(target))),
            Err(why) => {
                debug!(reason = why, "JWTTokenApi: token refused");
                Ok(None)
            }
        }
    }

    pub fn describe(&self) -> String {
        format!("JWTTokenApi {} ({})", self.source, self.key.describe())
    }
}

/// Seconds since the epoch, as Python's `time.time()`.
fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs_f64())
        .unwrap_or(0.0)
}

/// The target `token` names at time `now`, or why it names none.
pub fn target(token: &str, key: &Key, now: f64) -> Result<TargetSpec, &'static str> {
    let claims = jose::decode(token, key).map_err(|refusal| refusal.0)?;
    check_times(&claims, now)?;
    json_target(&Value::Object(claims))
}

/// The reference's checks: refused if `now < nbf` or `now > exp`. A time that is not a
/// number is refused too (the reference fails comparing it).
fn check_times(claims: &Map<String, Value>, now: f64) -> Result<(), &'static str> {
    let time = |name: &str| match claims.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_f64()
            .map(Some)
            .ok_or("a time claim is not a number"),
    };
    if time("nbf")?.is_some_and(|nbf| now < nbf) {
        return Err("the token is not valid yet (nbf)");
    }
    if time("exp")?.is_some_and(|exp| now > exp) {
        return Err("the token has expired (exp)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> Map<String, Value> {
        match serde_json::from_str(json).unwrap() {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    fn fixtures() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt")
    }

    fn key(name: &str) -> Key {
        Key::from_file(&std::fs::read(fixtures().join(name)).unwrap()).unwrap()
    }

    /// Every token of `tests/fixtures/jwt/tokens.json` (made by jwcrypto, the reference's
    /// library) gets the answer the fixture expects, and a reason when refused.
    #[test]
    fn every_fixture_token_gets_its_expected_answer() {
        let text = std::fs::read_to_string(fixtures().join("tokens.json")).unwrap();
        let cases: Vec<Value> = serde_json::from_str(&text).unwrap();
        assert!(cases.len() > 80, "{} cases", cases.len());
        let now = now();
        let mut wrong = Vec::new();
        for case in &cases {
            let name = case["name"].as_str().unwrap();
            let token = case["token"].as_str().unwrap();
            let got = target(token, &key(case["key"].as_str().unwrap()), now);
            let expected = match &case["expect"] {
                Value::Null => None,
                Value::Array(pair) if pair[0] == "unix_socket" => {
                    Some(TargetSpec::Unix(pair[1].as_str().unwrap().into()))
                }
                Value::Array(pair) => Some(TargetSpec::Tcp {
                    host: pair[0].as_str().unwrap().to_owned(),
                    port: pair[1].to_string().trim_matches('"').parse().unwrap(),
                }),
                other => panic!("{name}: expect {other}"),
            };
            if got.as_ref().ok() != expected.as_ref() {
                wrong.push(format!("{name}: got {got:?}, expected {expected:?}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn the_classic_confusion_is_refused_for_the_key_type_not_the_mac() {
        let token = fixture_token("hs256-keyed-with-rsa-public-key");
        assert_eq!(
            target(&token, &key("rsa.pub.pem"), now()),
            Err("the alg does not fit the key's type")
        );
    }

    /// The refusals that matter are refused for their own reason, not by luck further on (a
    /// zip that is inflated and then fails to parse would still be a 404).
    #[test]
    fn refusals_happen_for_their_own_reason() {
        for (name, key_file, reason) in [
            ("alg-none", "oct32.key", "alg none"),
            ("jwe-zip", "oct32.key", "zip"),
            ("jwe-in-jwe", "oct32.key", "a JWE nested in a JWE"),
            (
                "hs256-keyed-with-rsa-public-key",
                "rsa.pub.pem",
                "does not fit",
            ),
            ("rs256-token-oct-key", "oct32.key", "does not fit"),
            ("es256-token-p384-key", "ec384.pem", "does not fit"),
            (
                "jwe-rsa-oaep-public-key-only",
                "rsa.pub.pem",
                "does not fit",
            ),
            ("tampered-payload", "oct32.key", "signature does not verify"),
            ("wrong-key-RS256", "rsa.pem", "signature does not verify"),
            ("tampered-ciphertext", "oct32.key", "does not decrypt"),
            ("wrong-key-A256KW", "oct32.key", "does not decrypt"),
            ("HS512-short-key", "oct32.key", "shorter than the hash"),
            ("expired", "oct32.key", "expired"),
            ("nested-expired", "oct32.key", "expired"),
            ("not-yet-valid", "oct32.key", "not valid yet"),
        ] {
            let got = target(&fixture_token(name), &key(key_file), now());
            assert!(
                matches!(got, Err(why) if why.contains(reason)),
                "{name}: {got:?}, expected a refusal for {reason:?}"
            );
        }
    }

    /// A CBC-HS ciphertext with one bit flipped in its first block still unpads; only the
    /// tag tells it is forged.
    #[test]
    fn a_cbc_hs_ciphertext_changed_where_the_padding_survives_is_refused_by_its_tag() {
        for (name, key_file) in [
            ("jwe-dir-A128CBC-HS256", "oct32.key"),
            ("jwe-dir-A256CBC-HS512", "oct64.key"),
            ("nested-RSA-OAEP-256-A192CBC-HS384", "rsa.pem"),
        ] {
            let token = fixture_token(name);
            let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
            use base64::Engine;
            let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let mut ciphertext = engine.decode(&parts[3]).unwrap();
            ciphertext[0] ^= 1;
            parts[3] = engine.encode(&ciphertext);
            let got = target(&parts.join("."), &key(key_file), now());
            assert_eq!(got, Err("the JWE does not decrypt"), "{name}");
        }
    }

    fn fixture_token(name: &str) -> String {
        let text = std::fs::read_to_string(fixtures().join("tokens.json")).unwrap();
        let cases: Vec<Value> = serde_json::from_str(&text).unwrap();
        let case = cases.iter().find(|case| case["name"] == name).unwrap();
        case["token"].as_str().unwrap().to_owned()
    }

    /// `token` with one bit flipped in its part `index`.
    fn flipped(token: &str, index: usize) -> String {
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut bytes = engine.decode(&parts[index]).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        parts[index] = engine.encode(&bytes);
        parts.join(".")
    }

    /// RS* and PS* with the fixture's 2048-bit key go through ring: the genuine tokens pass,
    /// a signature or payload changed by one bit does not.
    #[test]
    fn rsa_tokens_changed_by_one_bit_are_refused_by_ring() {
        for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
            for (name, key_file) in [
                (format!("jws-{alg}"), "rsa.pem"),
                (format!("jws-{alg}-public-key"), "rsa.pub.pem"),
            ] {
                let key = key(key_file);
                assert!(matches!(key, Key::Rsa { ring: Some(_), .. }), "{key_file}");
                let token = fixture_token(&name);
                assert!(target(&token, &key, now()).is_ok(), "{name}");
                for part in [1, 2] {
                    assert_eq!(
                        target(&flipped(&token, part), &key, now()),
                        Err("the signature does not verify"),
                        "{name}, part {part} changed"
                    );
                }
            }
        }
    }

    /// ring verifies with 2048 to 8192 bits; the reference accepts a 1024-bit key, so such a
    /// key verifies with the rsa crate (on the blocking pool), tampering refused there too.
    #[test]
    fn a_1024_bit_rsa_key_verifies_as_the_reference_does_and_refuses_tampering() {
        let key = key("rsa1024.pem");
        assert!(matches!(key, Key::Rsa { ring: None, .. }));
        let text = std::fs::read_to_string(fixtures().join("rsa1024.json")).unwrap();
        let cases: Vec<Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(cases.len(), 5);
        for case in &cases {
            let alg = case["alg"].as_str().unwrap();
            let token = case["token"].as_str().unwrap();
            assert_eq!(case["reference"], serde_json::json!(["127.0.0.1", 5901]));
            let expected = TargetSpec::Tcp {
                host: "127.0.0.1".into(),
                port: 5901,
            };
            assert_eq!(target(token, &key, now()), Ok(expected), "{alg}");
            assert!(
                !jose::cheap(token, &key),
                "{alg}: not cheap with the rsa crate"
            );
            assert_eq!(
                target(&flipped(token, 2), &key, now()),
                Err("the signature does not verify"),
                "{alg}"
            );
        }
    }

    /// A JWS whose verify is cheap (RS256 through ring) does not wait for the blocking pool;
    /// a JWE (an RSA-OAEP private-key decryption, milliseconds) is decrypted only there.
    #[test]
    fn rs256_is_verified_in_place_and_a_jwe_decrypted_on_the_blocking_pool() {
        let runtime = crate::gate::token::one_blocking_thread();
        runtime.block_on(async {
            let api = JwtTokenApi::open(fixtures().join("rsa.pem").to_str().unwrap()).unwrap();
            // The pool's only thread, busy until released.
            let (release, wait) = std::sync::mpsc::channel::<()>();
            let busy = tokio::task::spawn_blocking(move || wait.recv());
            let bound = std::time::Duration::from_secs(10);
            let jws = fixture_token("jws-RS256");
            let found = tokio::time::timeout(bound, api.lookup(&jws)).await;
            assert!(matches!(found, Ok(Ok(Some(_)))), "{found:?}");

            let jwe = fixture_token("jwe-RSA-OAEP-256-A128GCM");
            let mut decrypting = std::pin::pin!(api.lookup(&jwe));
            let early = std::time::Duration::from_millis(200);
            assert!(
                tokio::time::timeout(early, &mut decrypting).await.is_err(),
                "the JWE was decrypted on the runtime thread"
            );
            release.send(()).unwrap();
            let found = tokio::time::timeout(bound, decrypting).await;
            assert!(matches!(found, Ok(Ok(Some(_)))), "{found:?}");
            busy.await.unwrap().unwrap();
        });
    }

    #[test]
    fn nbf_and_exp_bound_the_time_inclusively_as_the_reference_does() {
        let window = claims(r#"{"nbf": 100, "exp": 200.5}"#);
        assert!(check_times(&window, 99.9).is_err());
        assert!(check_times(&window, 100.0).is_ok());
        assert!(check_times(&window, 200.5).is_ok());
        assert!(check_times(&window, 200.6).is_err());
        assert!(check_times(&claims("{}"), 0.0).is_ok());
        assert!(check_times(&claims(r#"{"exp": "soon"}"#), 0.0).is_err());
        assert!(check_times(&claims(r#"{"nbf": true}"#), 0.0).is_err());
    }

    /// HMAC and Ed25519 JWSs are verified in place too: they get their answer while the
    /// blocking pool's one thread is busy.
    #[test]
    fn hmac_and_ed25519_tokens_are_verified_in_place() {
        let runtime = crate::gate::token::one_blocking_thread();
        runtime.block_on(async {
            let (release, wait) = std::sync::mpsc::channel::<()>();
            let busy = tokio::task::spawn_blocking(move || wait.recv());
            let bound = std::time::Duration::from_secs(10);
            for (name, key_file) in [("jws-HS256", "oct32.key"), ("jws-EdDSA", "ed25519.pem")] {
                let path = fixtures().join(key_file);
                let api = JwtTokenApi::open(path.to_str().unwrap()).unwrap();
                let found = tokio::time::timeout(bound, api.lookup(&fixture_token(name))).await;
                assert!(matches!(found, Ok(Ok(Some(_)))), "{name}: {found:?}");
            }
            release.send(()).unwrap();
            busy.await.unwrap().unwrap();
        });
    }

    /// A token of `MAX_TOKEN` bytes is decoded (and refused for what it is); one byte more is
    /// refused for its length. A refusal shows as its reason.
    #[test]
    fn tokens_are_decoded_up_to_max_token_bytes() {
        let key = key("oct32.key");
        let longest = "a".repeat(jose::MAX_TOKEN);
        let refusal = jose::decode(&longest, &key).unwrap_err();
        assert_eq!(refusal.to_string(), "not a compact JWS or JWE");
        let refusal = jose::decode(&format!("{longest}a"), &key).unwrap_err();
        assert_eq!(refusal.to_string(), "the token is too long");
    }

    /// An RS256 JWS is verified in place with ring up to 3072 bits; a larger key's verify
    /// costs more and goes to the pool, as does any JWE. (`rsa3072.pub.pem` and
    /// `rsa4096.pub.pem`: public halves of keys made by `openssl genpkey`.)
    #[test]
    fn rsa_keys_are_cheap_up_to_3072_bits() {
        let jws = fixture_token("jws-RS256");
        for (file, cheap) in [
            ("rsa.pub.pem", true),
            ("rsa3072.pub.pem", true),
            ("rsa4096.pub.pem", false),
        ] {
            assert_eq!(jose::cheap(&jws, &key(file)), cheap, "{file}");
        }
        let jwe = fixture_token("jwe-RSA-OAEP-256-A128GCM");
        assert!(!jose::cheap(&jwe, &key("rsa.pem")));
    }

    /// A key file of `MAX_KEY_FILE` bytes is read (text before its PEM block is skipped); one
    /// byte more is refused before it is read.
    #[test]
    fn key_files_are_read_up_to_max_key_file_bytes() {
        let pem = std::fs::read(fixtures().join("rsa.pub.pem")).unwrap();
        let dir = std::env::temp_dir().join(format!("websockify-jwt-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key.pem");
        let mut data = vec![b'#'; MAX_KEY_FILE as usize - pem.len()];
        data.extend_from_slice(&pem);
        std::fs::write(&path, &data).unwrap();
        let api = JwtTokenApi::open(path.to_str().unwrap()).unwrap();
        assert!(api.describe().ends_with(" (RSA public key)"), "{api:?}");
        data.insert(0, b'#');
        std::fs::write(&path, &data).unwrap();
        let err = JwtTokenApi::open(path.to_str().unwrap()).unwrap_err();
        assert!(err.message.contains("larger than 1048576 bytes"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
