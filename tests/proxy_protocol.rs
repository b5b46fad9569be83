//! The real client behind a load balancer or reverse proxy: PROXY protocol v1 and v2 from a
//! real HAProxy (`send-proxy`, `send-proxy-v2`) and crafted headers (TCP4, TCP6, UNKNOWN,
//! LOCAL, TLVs, malformed, truncated, trickled, from a peer not trusted), `X-Forwarded-For` and
//! `Forwarded` from trusted proxies only, and the PROXY header we send the target
//! (`--target-proxy-protocol`), byte for byte. Runs the `websockify` binary and reads its log.

use websockify_test_support as support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::haproxy::HaProxy;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// The binary on 127.0.0.1 with `args`, to `target`.
async fn start(args: &[&str], target: SocketAddr) -> LoggedBinary {
    let target = target.to_string();
    let mut all = args.to_vec();
    all.extend(["127.0.0.1:0", target.as_str()]);
    LoggedBinary::start(&all).await
}

/// A v2 PROXY header for TCP over IPv4 (built here by hand, not by the code under test).
fn v2_inet(src: SocketAddr, dst: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
        panic!("IPv4 only")
    };
    let mut out = SIG.to_vec();
    out.extend([0x21, 0x11]);
    out.extend(((12 + tlvs.len()) as u16).to_be_bytes());
    out.extend(s.ip().octets());
    out.extend(d.ip().octets());
    out.extend(s.port().to_be_bytes());
    out.extend(d.port().to_be_bytes());
    out.extend(tlvs);
    out
}

/// Sends `header` then an upgrade on `stream`; returns the client after a 101.
async fn upgrade_after(mut stream: TcpStream, header: &[u8]) -> RawClient<TcpStream> {
    stream.write_all(header).await.unwrap();
    let mut client = RawClient::new(stream);
    let head = client.request(&upgrade_request("/", "")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    client
}

async fn echo_once(client: &mut RawClient<TcpStream>) {
    client.send(true, 0x2, b"ping").await;
    assert_eq!(client.read_data(4).await, b"ping");
}

#[tokio::test]
async fn haproxy_send_proxy_v1_and_v2_name_the_real_client_in_the_log_and_to_the_target() {
    for send in ["send-proxy", "send-proxy-v2"] {
        // The real client is 127.0.0.2; HAProxy reaches us from 127.0.0.1, the one trusted.
        let (target, mut seen) = capturing_target(28).await;
        let server = start(
            &[
                "--proxy-protocol",
                "127.0.0.1/32",
                "--target-proxy-protocol",
                "v2",
            ],
            target,
        )
        .await;
        let haproxy = HaProxy::start(server.addr, send).await;
        let stream = connect_from([127, 0, 0, 2], haproxy.addr).await;
        let client_addr = stream.local_addr().unwrap();
        let mut client = upgrade_after(stream, b"").await;
        echo_once(&mut client).await;

        let line = server.wait_for("WebSocket connection").await;
        assert!(
            line.contains(&format!("client={client_addr}")),
            "{send}: {line}"
        );
        assert!(line.contains("peer=127.0.0.1:"), "{send}: {line}");
        // The target hears of the real client too, and of the address it connected to.
        let header = bounded("the target's header", seen.recv()).await.unwrap();
        assert_eq!(header, v2_inet(client_addr, haproxy.addr, b""), "{send}");
    }
}

#[tokio::test]
async fn crafted_headers_v1_tcp4_tcp6_unknown_and_v2_local_and_tlvs() {
    let target = echo_server().await;
    let server = start(&["--proxy-protocol", "127.0.0.1"], target).await;
    let cases: [(&[u8], Option<&str>); 5] = [
        (
            b"PROXY TCP4 203.0.113.7 192.0.2.1 5555 443\r\n",
            Some("203.0.113.7:5555"),
        ),
        (
            b"PROXY TCP6 2001:db8::7 2001:db8::1 6666 443\r\n",
            Some("[2001:db8::7]:6666"),
        ),
        (b"PROXY UNKNOWN\r\n", None),
        // LOCAL: the balancer's own health check; the connection's peer stands.
        (&[SIG, &[0x20, 0x00, 0x00, 0x00]].concat(), None),
        (
            &v2_inet(
                "198.51.100.9:7777".parse().unwrap(),
                "192.0.2.1:443".parse().unwrap(),
                // NOOP, AUTHORITY "example.com", UNIQUE_ID
                b"\x04\x00\x01\x00\x02\x00\x0bexample.com\x05\x00\x02ab",
            ),
            Some("198.51.100.9:7777"),
        ),
    ];
    for (n, (header, client)) in cases.iter().enumerate() {
        let stream = TcpStream::connect(server.addr).await.unwrap();
        let mut ws = upgrade_after(stream, header).await;
        echo_once(&mut ws).await;
        let line = server.wait_for(&format!("conn{{id={} ", n + 1)).await;
        match client {
            Some(client) => assert!(line.contains(&format!("client={client}")), "{line}"),
            None => assert!(!line.contains("client="), "{line}"),
        }
    }
    assert_eq!(server.count("WebSocket connection"), 5);
}

/// What the server answers, and the log line it writes, for `bytes` sent from `from`.
async fn refused(server: &LoggedBinary, from: [u8; 4], bytes: &[u8], log: &str) -> Vec<u8> {
    let mut stream = connect_from(from, server.addr).await;
    stream.write_all(bytes).await.unwrap();
    // Nothing more is coming: a truncated header meets the end of the stream.
    stream.shutdown().await.unwrap();
    let answer = read_until_dropped(&mut stream).await;
    server.wait_for(log).await;
    answer
}

/// Without a certificate and with one: a server with one peeks at the first bytes (for a TLS
/// handshake) where one without reads them, and each path checks the header on its own.
#[tokio::test]
async fn malformed_truncated_missing_and_untrusted_headers_are_refused_with_a_line() {
    let (cert_pem, key_pem, _) = self_signed();
    let cert = temp_dir("pp-cert").join("self.pem");
    std::fs::write(&cert, format!("{cert_pem}{key_pem}")).unwrap();
    let cert = cert.to_str().unwrap();
    for with_cert in [false, true] {
        untrusted_headers_are_refused(with_cert.then_some(cert)).await;
    }
}

async fn untrusted_headers_are_refused(cert: Option<&str>) {
    let target = echo_server().await;
    // -v: a client closing mid-header is a debug line.
    let mut args = vec!["--proxy-protocol", "127.0.0.1/32", "-v"];
    args.extend(cert.map(|cert| ["--cert", cert]).into_iter().flatten());
    let server = start(&args, target).await;
    let upgrade = upgrade_request("/", "");
    // Trusted peer: no header, a malformed one, a truncated one: closed, no HTTP at all.
    for (bytes, log) in [
        (upgrade.as_bytes().to_vec(), "client: no PROXY header"),
        (
            [
                &b"PROXY TCP4 203.0.113.7 192.0.2.1 5555 99999\r\n"[..],
                upgrade.as_bytes(),
            ]
            .concat(),
            "PROXY v1 port out of range",
        ),
        (
            [SIG, &[0x21, 0x11, 0x00, 0x0C, 1, 2, 3]].concat(),
            "reading the PROXY header",
        ),
        (
            [SIG, &[0x21, 0x11, 0x10, 0x00]].concat(),
            "PROXY v2 address block longer than 2048 bytes",
        ),
    ] {
        let answer = refused(&server, [127, 0, 0, 1], &bytes, log).await;
        assert!(answer.is_empty(), "{log}: {answer:?}");
    }
    // A peer outside the list may not name a client: refused, with a line naming the option.
    let header = b"PROXY TCP4 203.0.113.7 192.0.2.1 5555 443\r\n";
    let answer = refused(
        &server,
        [127, 0, 0, 2],
        &[&header[..], upgrade.as_bytes()].concat(),
        "PROXY header from a peer outside --proxy-protocol",
    )
    .await;
    assert!(answer.is_empty(), "{answer:?}");
    let v2 = v2_inet(
        "203.0.113.7:1".parse().unwrap(),
        "192.0.2.1:2".parse().unwrap(),
        b"",
    );
    refused(&server, [127, 0, 0, 2], &v2, "label=client_forbidden").await;
    // The first refusal's line matches too: wait for the second one itself.
    server.wait_for_count("label=client_forbidden", 2).await;
    assert_eq!(server.count("label=client_forbidden"), 2);
    // ... but is served as before without one.
    let stream = connect_from([127, 0, 0, 2], server.addr).await;
    let mut ws = upgrade_after(stream, b"").await;
    echo_once(&mut ws).await;
    assert!(server.lines().iter().all(|l| !l.contains("203.0.113.7")));
}

/// Without `--proxy-protocol` no header is looked for: a PROXY line is only a request line
/// HTTP cannot parse (a 400, as the reference's), not the refusal of a header from a peer
/// outside the option; with a certificate (the first bytes peeked) and without (read).
#[tokio::test]
async fn without_proxy_protocol_a_header_is_a_bad_request_not_a_refused_header() {
    let (cert_pem, key_pem, _) = self_signed();
    let cert = temp_dir("pp-none-cert").join("self.pem");
    std::fs::write(&cert, format!("{cert_pem}{key_pem}")).unwrap();
    let header = b"PROXY TCP4 203.0.113.7 192.0.2.1 5555 443\r\n";
    let upgrade = upgrade_request("/", "");
    for args in [vec!["-v"], vec!["-v", "--cert", cert.to_str().unwrap()]] {
        let target = echo_server().await;
        let server = start(&args, target).await;
        let answer =
            send_and_read_all(server.addr, &[&header[..], upgrade.as_bytes()].concat()).await;
        assert!(answer.starts_with(b"HTTP/1.1 400 "), "{args:?}: {answer:?}");
        server.wait_for("invalid HTTP").await;
        assert_eq!(server.count("outside --proxy-protocol"), 0, "{args:?}");
    }
}

#[tokio::test]
async fn a_header_trickled_slower_than_the_handshake_timeout_is_dropped_in_time() {
    let target = echo_server().await;
    let mut settings = settings_to(target);
    settings.proxy_protocol = vec![websockify::AllowEntry::parse("127.0.0.1").unwrap()];
    settings.handshake_timeout = Duration::from_millis(300);
    let proxy = start_proxy(settings).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let began = Instant::now();
    // One byte every 50 ms: never idle long, never done within 300 ms.
    let trickle = async {
        for byte in b"PROXY TCP4 203.0.113.7 192.0.2.1 5555 443\r\n" {
            if stream.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    bounded("the trickle to be cut", trickle).await;
    let answer = read_until_dropped(&mut stream).await;
    assert!(answer.is_empty());
    let took = began.elapsed();
    assert!(took < Duration::from_millis(1500), "held for {took:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn target_proxy_protocol_v1_and_v2_send_the_exact_header_before_any_byte() {
    let client_header = b"PROXY TCP4 203.0.113.7 192.0.2.1 5555 443\r\n";
    let v1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 5555 443\r\n".to_vec();
    let v2 = v2_inet(
        "203.0.113.7:5555".parse().unwrap(),
        "192.0.2.1:443".parse().unwrap(),
        b"",
    );
    for (version, expected) in [("v1", v1), ("v2", v2)] {
        let (target, mut seen) = capturing_target(expected.len()).await;
        let server = start(
            &[
                "--proxy-protocol",
                "127.0.0.1",
                "--target-proxy-protocol",
                version,
            ],
            target,
        )
        .await;
        let stream = TcpStream::connect(server.addr).await.unwrap();
        let mut ws = upgrade_after(stream, client_header).await;
        let header = bounded("the target's header", seen.recv()).await.unwrap();
        assert_eq!(header, expected, "{version}");
        // The session's own bytes follow the header, untouched.
        echo_once(&mut ws).await;
    }
}

#[tokio::test]
async fn forwarded_headers_count_only_from_trusted_proxies_rightmost_untrusted_first() {
    let target = echo_server().await;
    let server = start(&["--trusted-proxies", "127.0.0.1,10.0.0.0/8", "-v"], target).await;
    let xff = "X-Forwarded-For: 6.6.6.6, 198.51.100.7, 10.0.0.5\r\n";
    // From the trusted proxy: the rightmost address it does not trust is the client.
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let mut ws = RawClient::new(stream);
    let head = ws.request(&upgrade_request("/", xff)).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let line = server.wait_for("WebSocket connection").await;
    assert!(line.contains("forwarded=198.51.100.7"), "{line}");
    // Forwarded, when both are sent.
    let fwd = "Forwarded: for=\"[2001:db8::7]:4711\";proto=http\r\n";
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let mut ws2 = RawClient::new(stream);
    let head = ws2
        .request(&upgrade_request("/", &format!("{xff}{fwd}")))
        .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    server.wait_for("forwarded=2001:db8::7").await;
    // From anyone else: ignored.
    let stream = connect_from([127, 0, 0, 2], server.addr).await;
    let mut ws3 = RawClient::new(stream);
    let head = ws3.request(&upgrade_request("/", xff)).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    server.wait_for_count("WebSocket connection", 3).await;
    let third = server
        .lines()
        .into_iter()
        .find(|l| l.contains("peer=127.0.0.2") && l.contains("WebSocket connection"))
        .unwrap();
    assert!(!third.contains("forwarded="), "{third}");
    // A refusal's line names the forwarded client too.
    let answer = send_and_read_all(
        server.addr,
        format!("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n{xff}\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with(b"HTTP/1.1 400"), "{answer:?}");
    let line = server.wait_for("refused:").await;
    assert!(line.contains("forwarded=198.51.100.7"), "{line}");
}

#[tokio::test]
async fn a_forwarded_client_reaches_the_target_in_its_proxy_header() {
    let expected = b"PROXY TCP4 198.51.100.7 127.0.0.1 0 ";
    let (target, mut seen) = capturing_target(expected.len()).await;
    let server = start(
        &[
            "--trusted-proxies",
            "127.0.0.1",
            "--target-proxy-protocol",
            "v1",
        ],
        target,
    )
    .await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let mut ws = RawClient::new(stream);
    let head = ws
        .request(&upgrade_request("/", "X-Forwarded-For: 198.51.100.7\r\n"))
        .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let header = bounded("the target's header", seen.recv()).await.unwrap();
    assert_eq!(header, expected);
}
