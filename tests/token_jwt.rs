//! `JWTTokenApi` through the real binary: every token of `tests/fixtures/jwt/tokens.json`
//! (made by jwcrypto, the reference's library: every JWS and JWE alg, a JWS nested in a JWE,
//! expired, not yet valid, forged, tampered, confused) either reaches the target its claims
//! name or is a 404 with one log line that does not hold the token; the port claim as a
//! number and as a string; key files that cannot be used are start-up errors.

use websockify_test_support as support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use support::*;
use tokio::io::AsyncWriteExt;
use websockify::{Settings, Targets, TokenConfig};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt")
}

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join("tokens.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A target on the Unix socket `dir/jwt-target.sock` (the fixtures' `unix_socket` claim, a
/// path relative to the server's working directory) that says `name`, then echoes.
fn unix_target(dir: &Path, name: &'static str) {
    let listener = tokio::net::UnixListener::bind(dir.join("jwt-target.sock")).unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.write_all(name.as_bytes()).await;
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
}

async fn jwt_server(dir: &Path, key: &str) -> LoggedBinary {
    let source = fixtures().join(key);
    LoggedBinary::start_in(
        Some(dir),
        &[
            "--token-plugin=JWTTokenApi",
            &format!("--token-source={}", source.display()),
            "127.0.0.1:0",
        ],
    )
    .await
}

/// Waits (bounded) until `needle` is in `count` lines, then checks it is in no more.
async fn assert_lines(server: &LoggedBinary, needle: &str, count: usize) {
    bounded(&format!("{count} lines with {needle:?}"), async {
        while server.count(needle) < count {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(server.count(needle), count, "{:#?}", server.lines());
}

#[tokio::test]
async fn every_fixture_token_reaches_its_target_or_is_not_found_with_one_line() {
    let dir = temp_dir("jwt-fixtures");
    unix_target(&dir, "DESK");
    let mut by_key: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for case in cases() {
        by_key
            .entry(case["key"].as_str().unwrap().to_owned())
            .or_default()
            .push(case);
    }
    let (mut reached, mut refused) = (0, 0);
    for (key, cases) in by_key {
        let server = jwt_server(&dir, &key).await;
        let mut refused_here = 0;
        for case in &cases {
            let token = case["token"].as_str().unwrap();
            let path = format!("/websockify?token={}", encode(token));
            match &case["expect"] {
                Value::Null => {
                    assert_upgrade_refused(server.addr, &path, 404, "Token not found").await;
                    refused_here += 1;
                }
                Value::Array(pair) if pair[0] == "unix_socket" => {
                    assert_reaches(server.addr, &path, "DESK").await;
                    reached += 1;
                }
                // TCP targets at a fixed port: `port_claims_*` below reach a real one.
                _ => continue,
            }
        }
        assert_lines(&server, "Token not found", refused_here).await;
        for line in server.lines() {
            for case in &cases {
                let token = case["token"].as_str().unwrap();
                let signature = token.rsplit('.').next().unwrap_or(token);
                assert!(
                    signature.len() < 16 || !line.contains(signature),
                    "{key}: a token in the log: {line}"
                );
            }
        }
        refused += refused_here;
    }
    // Every JWS alg, every JWE alg and enc, nested: the fixtures' count of reachable tokens.
    assert_eq!(reached, 61, "tokens that reached their target");
    assert!(refused >= 20, "{refused} refused");
}

/// `%`-encodes what a query must not carry raw (the JSON-serialization fixture).
fn encode(token: &str) -> String {
    token
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An HS256 JWT of `claims`, signed here with the fixtures' `oct32.key`.
fn hs256(claims: &Value) -> String {
    let text = std::fs::read_to_string(fixtures().join("oct32.key")).unwrap();
    let secret = URL_SAFE_NO_PAD.decode(text.trim_end()).unwrap();
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&secret).unwrap();
    mac.update(input.as_bytes());
    let tag = mac.finalize().into_bytes();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag))
}

fn settings(key: &Path) -> Settings {
    let mut settings = settings_to(([127, 0, 0, 1], 9).into());
    settings.target = Targets::Tokens(TokenConfig {
        plugin: "JWTTokenApi".into(),
        source: Some(key.to_string_lossy().into_owned()),
        host_token: false,
    });
    settings
}

#[tokio::test]
async fn port_claims_as_number_or_string_reach_a_tcp_target_and_times_are_enforced() {
    let target = named_target("TCP").await;
    let proxy = start_proxy(settings(&fixtures().join("oct32.key"))).await;
    let port = target.port();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for claims in [
        serde_json::json!({"host": "127.0.0.1", "port": port}),
        serde_json::json!({"host": "127.0.0.1", "port": port.to_string()}),
        serde_json::json!({"host": "127.0.0.1", "port": port, "nbf": now - 5, "exp": now + 60}),
    ] {
        assert_reaches(proxy.addr, &format!("/?token={}", hs256(&claims)), "TCP").await;
    }
    for claims in [
        serde_json::json!({"host": "127.0.0.1", "port": port, "exp": now - 5}),
        serde_json::json!({"host": "127.0.0.1", "port": port, "nbf": now + 60}),
        serde_json::json!({"host": "127.0.0.1", "port": "not a port"}),
        serde_json::json!({"host": "127.0.0.1"}),
    ] {
        let path = format!("/?token={}", hs256(&claims));
        assert_upgrade_refused(proxy.addr, &path, 404, "Token not found").await;
    }
    proxy.stop().await;
}

#[tokio::test]
async fn key_files_that_cannot_be_used_are_start_up_errors_naming_them() {
    let dir = temp_dir("jwt-keys");
    let missing = dir.join("missing.pem");
    let err = startup_error(settings(&missing));
    assert!(
        err.message
            .contains(&format!("--token-source {}", missing.display())),
        "{err}"
    );
    // 23 characters: the reference refuses it too ("Incorrect padding").
    let newline = fixtures().join("oct16-newline.key");
    let err = startup_error(settings(&newline));
    assert!(err.message.contains("not base64url"), "{err}");
    let garbled = dir.join("garbled.pem");
    std::fs::write(
        &garbled,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let err = startup_error(settings(&garbled));
    assert!(err.message.contains("PRIVATE KEY"), "{err}");
    // A key the reference reads, each kind: the start-up line names it.
    for (key, kind) in [
        ("rsa.pem", "RSA private key"),
        ("rsa.pub.pem", "RSA public key"),
        ("ec521.pem", "EC P-521 private key"),
        ("ed25519.pem", "Ed25519 key"),
        ("secret.txt", "symmetric key"),
    ] {
        let server = jwt_server(&dir, key).await;
        server.wait_for(kind).await;
    }
}
