//! Auth plugins, end to end on real sockets: BasicHTTPAuth, ExpectOrigin and ClientCertCNAuth
//! decide before the 101 (after the target lookup), and a refusal is an HTTP answer with the
//! reference's status and headers that ends the connection without the target ever being
//! connected. `--web-auth` puts the `--web` files behind the same plugin. The log line of a
//! refusal names neither the password nor the `Authorization` header.

use websockify_test_support as support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use websockify::{AuthConfig, Server, Settings};

const CHALLENGE: &str = "WWW-Authenticate: Basic realm=\"Websockify\"\r\n";

/// An echo target that counts the connections it accepts.
async fn counted_echo() -> (SocketAddr, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let counter = count.clone();
    let addr = tcp_server(move |mut stream| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let (mut r, mut w) = stream.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        }
    })
    .await;
    (addr, count)
}

fn with_auth(mut settings: Settings, plugin: &str, source: &str) -> Settings {
    settings.auth = Some(AuthConfig {
        plugin: plugin.into(),
        source: Some(source.into()),
    });
    settings
}

/// `Authorization: Basic` with these bytes as the credentials.
fn basic(credentials: &[u8]) -> String {
    format!("Authorization: Basic {}\r\n", STANDARD.encode(credentials))
}

/// Asserts the upgrade with `extra` header lines gets a 101 and relays both ways.
async fn assert_relays(proxy: SocketAddr, extra: &str) {
    let mut client = RawClient::new(TcpStream::connect(proxy).await.unwrap());
    let head = client.request(&upgrade_request("/websockify", extra)).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{extra:?}: {head}");
    client.send(true, 0x2, b"hello").await;
    assert_eq!(client.read_data(5).await, b"hello", "{extra:?}");
}

/// Sends `raw`, asserts the answer has `status` and ends with the one-line `reason`, and that
/// the server then ended the connection; returns the whole answer.
async fn assert_refused(proxy: SocketAddr, raw: &str, status: u16, reason: &str) -> String {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    // The status first (so that a 101 fails here, saying so), then the rest until the server
    // ends the connection (bounded: a connection left open fails there).
    let mut got = Vec::new();
    bounded("a response head", async {
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let head = String::from_utf8_lossy(&got).into_owned();
    assert!(
        head.starts_with(&format!("HTTP/1.1 {status} ")),
        "{raw:?}: {head}"
    );
    got.extend(read_until_dropped(&mut stream).await);
    let answer = String::from_utf8_lossy(&got).into_owned();
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    assert!(
        answer.ends_with(&format!(": {reason}\n")),
        "{raw:?}: {answer}"
    );
    answer
}

/// The whole answer has the Basic challenge exactly when `challenged`.
fn assert_challenge(answer: &str, challenged: bool) {
    let lower = answer.to_ascii_lowercase();
    assert_eq!(
        lower.matches("www-authenticate:").count(),
        usize::from(challenged),
        "{answer}"
    );
    if challenged {
        assert!(lower.contains(&CHALLENGE.to_ascii_lowercase()), "{answer}");
    }
}

#[tokio::test]
async fn basic_auth_lets_the_right_credentials_through_and_nothing_else_reaches_the_target() {
    let (target, connects) = counted_echo().await;
    let proxy = start_proxy(with_auth(
        settings_to(target),
        "BasicHTTPAuth",
        "alice:open:sesame",
    ))
    .await;

    let refusals: &[(&str, String, u16, &str)] = &[
        (
            "wrong user",
            basic(b"bob:open:sesame"),
            401,
            "Invalid credentials",
        ),
        (
            "wrong password",
            basic(b"alice:open:sesamE"),
            401,
            "Invalid credentials",
        ),
        (
            "password missing",
            basic(b"alice:"),
            401,
            "Invalid credentials",
        ),
        (
            "user only",
            basic(b"alice:open"),
            401,
            "Invalid credentials",
        ),
        ("no header", String::new(), 401, "Authentication required"),
        (
            "empty header",
            "Authorization:\r\n".into(),
            401,
            "Authentication required",
        ),
        (
            "not base64",
            "Authorization: Basic %%%%\r\n".into(),
            403,
            "Malformed Authorization header",
        ),
        (
            "no colon",
            basic(b"aliceopensesame"),
            403,
            "Malformed Authorization header",
        ),
        (
            "other scheme",
            format!(
                "Authorization: Bearer {}\r\n",
                STANDARD.encode("alice:open:sesame")
            ),
            403,
            "Malformed Authorization header",
        ),
        (
            "scheme in lower case, as the reference",
            format!(
                "Authorization: basic {}\r\n",
                STANDARD.encode("alice:open:sesame")
            ),
            403,
            "Malformed Authorization header",
        ),
    ];
    for (what, header, status, reason) in refusals {
        let answer = assert_refused(
            proxy.addr,
            &upgrade_request("/websockify", header),
            *status,
            reason,
        )
        .await;
        assert_challenge(&answer, *status == 401);
        assert_eq!(
            connects.load(Ordering::SeqCst),
            0,
            "{what}: target connected"
        );
    }

    assert_relays(proxy.addr, &basic(b"alice:open:sesame")).await;
    assert_eq!(connects.load(Ordering::SeqCst), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn basic_auth_credentials_are_iso_8859_1_as_the_reference() {
    let (target, connects) = counted_echo().await;
    let proxy = start_proxy(with_auth(
        settings_to(target),
        "BasicHTTPAuth",
        "josé:grüße",
    ))
    .await;
    // The same text as UTF-8 bytes is other characters in ISO-8859-1: refused.
    let answer = assert_refused(
        proxy.addr,
        &upgrade_request("/", &basic("josé:grüße".as_bytes())),
        401,
        "Invalid credentials",
    )
    .await;
    assert_challenge(&answer, true);
    assert_eq!(connects.load(Ordering::SeqCst), 0);
    assert_relays(proxy.addr, &basic(b"jos\xe9:gr\xfc\xdfe")).await;
    proxy.stop().await;
}

#[tokio::test]
async fn expect_origin_admits_only_the_listed_origins() {
    let (target, connects) = counted_echo().await;
    let proxy = start_proxy(with_auth(
        settings_to(target),
        "websockify.auth_plugins.ExpectOrigin",
        "https://desk.example http://localhost:6080",
    ))
    .await;
    for origin in [
        "",
        "Origin: https://evil.example\r\n",
        "Origin: null\r\n",
        "Origin: https://desk.example.evil.example\r\n",
        "Origin: http://desk.example\r\n",
        "Origin: http://localhost:6081\r\n",
    ] {
        let answer = assert_refused(
            proxy.addr,
            &upgrade_request("/", origin),
            403,
            "Invalid Origin",
        )
        .await;
        assert_challenge(&answer, false);
        assert_eq!(connects.load(Ordering::SeqCst), 0, "{origin:?}");
    }
    assert_relays(proxy.addr, "Origin: https://desk.example\r\n").await;
    assert_relays(proxy.addr, "Origin: http://localhost:6080\r\n").await;
    assert_eq!(connects.load(Ordering::SeqCst), 2);
    proxy.stop().await;
}

/// The CN comes from the verified client certificate only. The reference puts it in a request
/// header, `SSL_CLIENT_S_DN_CN`, after deleting the client's own `SSL_*` headers
/// case-sensitively; here no header counts, in any spelling. (With a certificate: the unit tests
/// of `client_cert.rs`, and the TLS tests of `--verify-client`.)
#[tokio::test]
async fn client_cert_cn_auth_ignores_headers_that_imitate_the_certificate() {
    let (target, connects) = counted_echo().await;
    let mut settings = with_auth(settings_to(target), "ClientCertCNAuth", "alice bob");
    // The plugin needs --verify-client (a start-up error otherwise); these clients come over
    // plain ws://, so no certificate can be presented: only a header could pretend one.
    let (cert, key, _) = self_signed();
    let dir = temp_dir("auth-cn");
    let pem = dir.join("server.pem");
    std::fs::write(&pem, format!("{cert}{key}")).unwrap();
    settings.cert = pem.clone();
    settings.cert_given = true;
    settings.verify_client = true;
    settings.cafile = Some(dir.join("server.pem"));
    let proxy = start_proxy(settings).await;
    for imitation in [
        "",
        "SSL_CLIENT_S_DN_CN: alice\r\n",
        "ssl_client_s_dn_cn: alice\r\n",
        "Ssl_Client_S_Dn_Cn: bob\r\nSSL_CLIENT_VERIFY: SUCCESS\r\n",
        "X-SSL-Client-CN: alice\r\n",
    ] {
        let answer = assert_refused(
            proxy.addr,
            &upgrade_request("/", imitation),
            403,
            "No verified client certificate",
        )
        .await;
        assert_challenge(&answer, false);
    }
    assert_eq!(connects.load(Ordering::SeqCst), 0);
    proxy.stop().await;
}

/// A `--web` root with one file.
fn web_root() -> std::path::PathBuf {
    let dir = temp_dir("auth-web");
    std::fs::write(dir.join("vnc.html"), "<p>desk</p>").unwrap();
    dir
}

fn get(path: &str, method: &str, extra: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}\r\n")
}

#[tokio::test]
async fn web_auth_puts_the_static_files_behind_the_plugin_too() {
    let (target, _) = counted_echo().await;
    let mut settings = with_auth(settings_to(target), "BasicHTTPAuth", "u:p");
    settings.web = Some(web_root());
    settings.web_auth = true;
    let proxy = start_proxy(settings).await;
    for (method, request) in [
        ("GET", get("/vnc.html", "GET", "")),
        ("HEAD", get("/vnc.html", "HEAD", "")),
        ("GET listing", get("/", "GET", "")),
        ("GET missing", get("/nothing", "GET", "")),
        ("GET wrong", get("/vnc.html", "GET", &basic(b"u:x"))),
    ] {
        let answer = send_and_read_all(proxy.addr, request.as_bytes()).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 401 "), "{method}: {answer}");
        assert_challenge(&answer, true);
        assert!(!answer.contains("desk"), "{method}: {answer}");
    }
    let answer = assert_refused(
        proxy.addr,
        &get("/vnc.html", "GET", "Authorization: Digest x\r\n"),
        403,
        "Malformed Authorization header",
    )
    .await;
    assert_challenge(&answer, false);

    let answer = send_and_read_all(
        proxy.addr,
        get("/vnc.html", "GET", &basic(b"u:p")).as_bytes(),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.ends_with("<p>desk</p>"), "{answer}");
    // The WebSockets need them as before.
    assert_refused(
        proxy.addr,
        &upgrade_request("/", ""),
        401,
        "Authentication required",
    )
    .await;
    assert_relays(proxy.addr, &basic(b"u:p")).await;
    proxy.stop().await;
}

#[tokio::test]
async fn without_web_auth_the_files_are_open_but_websockets_are_not() {
    let (target, connects) = counted_echo().await;
    let mut settings = with_auth(settings_to(target), "BasicHTTPAuth", "u:p");
    settings.web = Some(web_root());
    let proxy = start_proxy(settings).await;
    let answer = send_and_read_all(proxy.addr, get("/vnc.html", "GET", "").as_bytes()).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.ends_with("<p>desk</p>"), "{answer}");
    assert_refused(
        proxy.addr,
        &upgrade_request("/", ""),
        401,
        "Authentication required",
    )
    .await;
    assert_eq!(connects.load(Ordering::SeqCst), 0);
    proxy.stop().await;
}

/// The plugin's source is checked when the server is made: a source that cannot let anyone in
/// is a start-up error naming the flag (and never the password).
#[test]
fn a_useless_source_is_a_start_up_error() {
    let target: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for (plugin, source) in [
        ("BasicHTTPAuth", "no-colon-s3cret"),
        ("ExpectOrigin", "  "),
        ("ClientCertCNAuth", ""),
        // Without --verify-client nobody could ever be let in.
        ("ClientCertCNAuth", "alice"),
        ("NoSuchPlugin", "x"),
    ] {
        let mut settings = with_auth(settings_to(target), plugin, source);
        if source.is_empty() {
            settings.auth.as_mut().unwrap().source = None;
        }
        let Err(err) = Server::new(settings) else {
            panic!("{plugin} {source:?} started");
        };
        assert!(err.message.contains("--auth-"), "{err}");
        assert!(!err.message.contains("s3cret"), "{err}");
    }
}

#[tokio::test]
async fn a_refusal_is_one_log_line_without_the_credentials() {
    let (target, _) = counted_echo().await;
    let target = target.to_string();
    let server = LoggedBinary::start(&[
        "--auth-plugin=BasicHTTPAuth",
        "--auth-source=admin:hunter2",
        "127.0.0.1:0",
        &target,
    ])
    .await;
    let summary = server.wait_for("Proxying to").await;
    assert!(summary.contains("auth by BasicHTTPAuth"), "{summary}");
    let addr = server.addr;

    let sent = basic(b"admin:hunter3");
    assert_refused(
        addr,
        &upgrade_request("/", &sent),
        401,
        "Invalid credentials",
    )
    .await;
    let line = server.wait_for("refused").await;
    assert!(
        line.contains("401") && line.contains("Invalid credentials"),
        "{line}"
    );
    // Let anything else the refusal might log arrive.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"\r\n").await.unwrap();
    drop(stream);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = server.lines();
    assert_eq!(
        lines.iter().filter(|l| l.contains("refused")).count(),
        1,
        "{lines:#?}"
    );
    let encoded = sent.trim_end().rsplit(' ').next().unwrap().to_owned();
    for secret in [
        "hunter2",
        "hunter3",
        &encoded,
        "Authorization",
        "authorization",
    ] {
        assert!(
            lines.iter().all(|l| !l.contains(secret)),
            "{secret:?} in the log: {lines:#?}"
        );
    }
}
