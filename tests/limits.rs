//! Limits: `--max-connections`, `--max-connections-per-ip` (counted on the real client behind
//! a PROXY header, through a real HAProxy too) and `--handshake-rate`. Excess plain HTTP gets a
//! 503 with `Retry-After`; excess TLS is closed before the handshake; every refusal has its
//! line and label; others are never held up. Runs the `websockify` binary.

use websockify_test_support as support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::haproxy::HaProxy;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(args: &[&str], target: SocketAddr) -> LoggedBinary {
    let target = target.to_string();
    let mut all = args.to_vec();
    all.extend(["127.0.0.1:0", target.as_str()]);
    LoggedBinary::start(&all).await
}

/// An open, echoing session on `stream` (after `header`).
async fn session(mut stream: TcpStream, header: &[u8]) -> RawClient<TcpStream> {
    stream.write_all(header).await.unwrap();
    let mut client = RawClient::new(stream);
    let head = client.request(&upgrade_request("/", "")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    client.send(true, 0x2, b"ping").await;
    assert_eq!(client.read_data(4).await, b"ping");
    client
}

/// The whole answer to an upgrade sent on `stream` after `header`.
async fn answer(mut stream: TcpStream, header: &[u8]) -> String {
    stream.write_all(header).await.unwrap();
    stream
        .write_all(upgrade_request("/", "").as_bytes())
        .await
        .unwrap();
    String::from_utf8_lossy(&read_until_dropped(&mut stream).await).into_owned()
}

fn assert_503(answer: &str, retry_after: u32, reason: &str) {
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(
        answer.contains(&format!("\r\nRetry-After: {retry_after}\r\n")),
        "{answer}"
    );
    assert!(answer.contains(reason), "{answer}");
}

#[tokio::test]
async fn max_connections_answers_503_then_serves_again_when_one_ends() {
    let target = echo_server().await;
    let server = start(&["--max-connections", "2"], target).await;
    let a = session(TcpStream::connect(server.addr).await.unwrap(), b"").await;
    let _b = session(TcpStream::connect(server.addr).await.unwrap(), b"").await;
    let refused = answer(TcpStream::connect(server.addr).await.unwrap(), b"").await;
    assert_503(&refused, 5, "too many connections (--max-connections)");
    let line = server.wait_for("label=client_limit_connections").await;
    assert!(line.contains("WARN"), "{line}");
    drop(a);
    // The place comes back once the first session's connection is gone.
    session_when_free(server.addr).await;
}

/// A session, once the server has a place for it (a connection just dropped by a client is
/// ended by the server a moment later).
async fn session_when_free(addr: SocketAddr) -> RawClient<TcpStream> {
    bounded("a place to free up", async {
        loop {
            let stream = TcpStream::connect(addr).await.unwrap();
            let mut client = RawClient::new(stream);
            if client
                .request(&upgrade_request("/", ""))
                .await
                .starts_with("HTTP/1.1 101")
            {
                return client;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// The 503 goes out before the request is read; what the client still sends after it is read
/// and dropped (for up to a second), not met with a reset: closing with those bytes unread
/// would reset the connection. A write after a reset fails (EPIPE), so each of these writes,
/// 20 ms apart, succeeding says the server was still reading.
#[tokio::test]
async fn a_refused_client_still_sending_its_request_after_the_503_is_not_reset() {
    let target = echo_server().await;
    let server = start(&["--max-connections", "1"], target).await;
    let _held = session_when_free(server.addr).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let refused = String::from_utf8(read_until_dropped(&mut stream).await).unwrap();
    assert_503(&refused, 5, "too many connections (--max-connections)");
    for n in 0..5 {
        let sent = stream
            .write_all(format!("X-Late-{n}: 1\r\n").as_bytes())
            .await;
        assert!(sent.is_ok(), "write {n} after the 503: {sent:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The drain itself does not fail (an overflow's panic left the socket open: the writes
    // above saw nothing).
    assert_eq!(server.count("panicked"), 0, "{:?}", server.lines());
}

#[tokio::test]
async fn a_tls_client_over_the_limit_is_closed_before_its_handshake() {
    let (cert, key, der) = self_signed();
    let dir = temp_dir("limits-tls");
    let pem = dir.join("cert.pem");
    std::fs::write(&pem, format!("{cert}{key}")).unwrap();
    let target = echo_server().await;
    let server = start(
        &["--cert", pem.to_str().unwrap(), "--max-connections", "1"],
        target,
    )
    .await;
    // A real ClientHello: a TLS server answers it (a ServerHello, 0x16); over the limit, the
    // connection closes before any TLS byte.
    let hello = client_hello(&der);
    let mut under = TcpStream::connect(server.addr).await.unwrap();
    under.write_all(&hello).await.unwrap();
    let mut first = [0u8; 1];
    bounded("a ServerHello", under.read_exact(&mut first))
        .await
        .unwrap();
    assert_eq!(first, [0x16]);
    drop(under);
    let _held = session_when_free(server.addr).await;
    let mut over = TcpStream::connect(server.addr).await.unwrap();
    over.write_all(&hello).await.unwrap();
    assert_eq!(read_until_dropped(&mut over).await, b"");
    server.wait_for("label=client_limit_connections").await;
}

/// The limit holds whatever the first bytes: over it, a web page (`--web`) is a 503 like an
/// upgrade, and the Flash policy request gets nothing (it is not HTTP, so no 503 either);
/// under it, both are answered.
#[tokio::test]
async fn over_the_limit_a_web_page_gets_503_and_the_flash_policy_request_nothing() {
    let web = temp_dir("limits-web");
    std::fs::write(web.join("index.html"), "page").unwrap();
    let target = echo_server().await;
    let server = start(
        &["--web", web.to_str().unwrap(), "--max-connections", "2"],
        target,
    )
    .await;
    let page = b"GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let policy = b"<policy-file-request/>\0";
    async fn reply(addr: SocketAddr, opening: &[u8]) -> Vec<u8> {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(opening).await.unwrap();
        read_until_dropped(&mut stream).await
    }
    // Under the limit: served. (Two places: the server may still hold the first connection's
    // for a moment after the client saw it end.)
    let served = reply(server.addr, page).await;
    assert!(served.starts_with(b"HTTP/1.1 200 "), "{served:?}");
    assert!(reply(server.addr, policy)
        .await
        .starts_with(b"<cross-domain-policy>"));
    // Over it.
    let _held = session_when_free(server.addr).await;
    let _held_too = session_when_free(server.addr).await;
    let refused = String::from_utf8(reply(server.addr, page).await).unwrap();
    assert_503(&refused, 5, "too many connections (--max-connections)");
    assert_eq!(reply(server.addr, policy).await, b"");
}

#[tokio::test]
async fn per_ip_limit_counts_the_real_client_behind_haproxy() {
    let target = echo_server().await;
    let server = start(
        &[
            "--proxy-protocol",
            "127.0.0.1",
            "--max-connections-per-ip",
            "1",
        ],
        target,
    )
    .await;
    let haproxy = HaProxy::start(server.addr, "send-proxy-v2").await;
    // Every connection reaches us from HAProxy's 127.0.0.1; the clients are .2 and .3.
    let _first = session(connect_from([127, 0, 0, 2], haproxy.addr).await, b"").await;
    let refused = answer(connect_from([127, 0, 0, 2], haproxy.addr).await, b"").await;
    assert_503(&refused, 5, "--max-connections-per-ip");
    let line = server.wait_for("label=client_limit_per_ip").await;
    assert!(line.contains("client=127.0.0.2:"), "{line}");
    let _other = session(connect_from([127, 0, 0, 3], haproxy.addr).await, b"").await;
}

#[tokio::test]
async fn per_ip_limit_with_crafted_headers_and_ipv6_64s() {
    let target = echo_server().await;
    let server = start(
        &[
            "--proxy-protocol",
            "127.0.0.1",
            "--max-connections-per-ip",
            "1",
        ],
        target,
    )
    .await;
    let from = |ip: &str| format!("PROXY TCP6 {ip} 2001:db8::1 4000 443\r\n").into_bytes();
    let _a = session(
        TcpStream::connect(server.addr).await.unwrap(),
        &from("2001:db8:1:2::1"),
    )
    .await;
    // Same /64: refused; another /64: served.
    let refused = answer(
        TcpStream::connect(server.addr).await.unwrap(),
        &from("2001:db8:1:2::9"),
    )
    .await;
    assert_503(&refused, 5, "--max-connections-per-ip");
    let _b = session(
        TcpStream::connect(server.addr).await.unwrap(),
        &from("2001:db8:1:3::1"),
    )
    .await;
}

#[tokio::test]
async fn handshake_rate_refuses_a_fast_client_and_not_the_others() {
    let target = echo_server().await;
    let server = start(
        &[
            "--proxy-protocol",
            "127.0.0.1",
            "--handshake-rate",
            "1/s",
            "-v",
        ],
        target,
    )
    .await;
    let from = |ip: &str| format!("PROXY TCP4 {ip} 192.0.2.1 4000 443\r\n").into_bytes();
    let _a = session(
        TcpStream::connect(server.addr).await.unwrap(),
        &from("203.0.113.1"),
    )
    .await;
    let refused = answer(
        TcpStream::connect(server.addr).await.unwrap(),
        &from("203.0.113.1"),
    )
    .await;
    assert_503(&refused, 1, "connecting too fast (--handshake-rate)");
    server.wait_for("label=client_limit_rate").await;
    let _b = session(
        TcpStream::connect(server.addr).await.unwrap(),
        &from("203.0.113.2"),
    )
    .await;
}

#[tokio::test]
async fn a_flood_of_refused_connections_does_not_hold_up_another_client() {
    let target = echo_server().await;
    let mut server = start(
        &[
            "--proxy-protocol",
            "127.0.0.1",
            "--max-connections-per-ip",
            "1",
        ],
        target,
    )
    .await;
    let flooder = b"PROXY TCP4 203.0.113.66 192.0.2.1 4000 443\r\n";
    let _held = session(TcpStream::connect(server.addr).await.unwrap(), flooder).await;
    // 300 connections over the limit at once, each sending its request and never reading.
    let mut flood = Vec::new();
    for _ in 0..300 {
        let addr = server.addr;
        flood.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let _ = s.write_all(flooder).await;
            let _ = s.write_all(upgrade_request("/", "").as_bytes()).await;
            let mut buf = [0u8; 32];
            let _ = tokio::time::timeout(WAIT, s.read(&mut buf)).await;
            buf
        }));
    }
    let began = Instant::now();
    let _other = session(
        TcpStream::connect(server.addr).await.unwrap(),
        b"PROXY TCP4 198.51.100.1 192.0.2.1 4000 443\r\n",
    )
    .await;
    let took = began.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "the other client waited {took:?}"
    );
    for task in flood {
        let first = bounded("a refused connection", task).await.unwrap();
        assert!(first.starts_with(b"HTTP/1.1 503 "), "{first:?}");
    }
    assert!(server.is_running());
}

/// The bytes a rustls client opens a handshake with, trusting `der`.
fn client_hello(der: &[u8]) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(der.to_vec()))
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}
