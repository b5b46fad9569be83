//! The HTTP side of a connection over real sockets: the RFC 6455 server handshake, refusals
//! (400, 405, 431), subprotocol choice, the handshake timeout and pipelined frames.

use websockify_test_support as support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use support::{
    bounded, closed_port, echo_server, masked_frame, read_until_dropped, send_and_read_all,
    settings_to, start_proxy, upgrade_request, Proxy, RawClient, ACCEPT, KEY,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use websockify::MAX_HEAD_BYTES;

/// Short enough for tests, far from the 5 s default so that the tests show it is honoured.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(300);
/// A drop "after the handshake timeout" must come before this (the default is 5 s).
const DROP_DEADLINE: Duration = Duration::from_secs(3);

/// A proxy to a fresh echo server, with the short handshake timeout.
async fn proxy() -> Proxy {
    let mut settings = settings_to(echo_server().await);
    settings.handshake_timeout = HANDSHAKE_TIMEOUT;
    start_proxy(settings).await
}

/// The values of header `name` (case-insensitive) in a response head, trimmed.
fn header_values<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

/// The single value of header `name`, if present (panics if repeated).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    let values = header_values(head, name);
    assert!(values.len() <= 1, "{name} repeated in {head}");
    values.first().copied()
}

/// The status code of a response head.
fn status(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"))
}

/// Sends `raw` on a new connection and reads one response: (head, body). The body is read by
/// its Content-Length (none for HEAD requests).
async fn exchange(addr: SocketAddr, raw: &[u8]) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw).await.unwrap();
    let is_head = raw.starts_with(b"HEAD ");
    bounded("an HTTP response", async {
        let mut buf = Vec::new();
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(buf[..end + 4].to_vec()).unwrap();
                let len: usize = match header(&head, "content-length") {
                    Some(v) if !is_head => v.parse().unwrap(),
                    _ => 0,
                };
                if buf.len() >= end + 4 + len {
                    let body = buf[end + 4..end + 4 + len].to_vec();
                    return (head, body);
                }
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "connection closed before a whole response; got {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
}

/// An upgrade request with the given version and key lines (either may be absent).
fn request_with(method: &str, version: Option<&str>, key: Option<&str>, extra: &str) -> String {
    let mut req = format!(
        "{method} /websockify HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\n"
    );
    if let Some(v) = version {
        req.push_str(&format!("Sec-WebSocket-Version: {v}\r\n"));
    }
    if let Some(k) = key {
        req.push_str(&format!("Sec-WebSocket-Key: {k}\r\n"));
    }
    req.push_str(extra);
    req.push_str("\r\n");
    req
}

/// Upgrades offering the given `Sec-WebSocket-Protocol` lines; returns the client and the head.
async fn upgrade_offering(
    addr: SocketAddr,
    protocol_lines: &[&str],
) -> (RawClient<TcpStream>, String) {
    let extra: String = protocol_lines
        .iter()
        .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
        .collect();
    let stream = TcpStream::connect(addr).await.unwrap();
    let mut client = RawClient::new(stream);
    let head = client
        .request(&upgrade_request("/websockify", &extra))
        .await;
    assert_eq!(status(&head), 101, "not upgraded: {head}");
    (client, head)
}

/// Asserts the session is in binary mode: a binary frame comes back as one binary frame.
async fn assert_binary_mode(client: &mut RawClient<TcpStream>) {
    let payload = b"\x00\xffbinary mode\x80";
    client.send(true, 0x2, payload).await;
    let frame = client.read_frame().await.expect("an echo");
    assert_eq!(
        frame.opcode, 0x2,
        "binary mode answers with binary frames: {frame:?}"
    );
    assert_eq!(frame.payload, payload);
}

/// Asserts the session is in base64 mode: base64 text goes to the target decoded, and target
/// data comes back as base64 text frames.
async fn assert_base64_mode(client: &mut RawClient<TcpStream>) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b"\x00\xffbase64 mode\x80";
    client.send(true, 0x1, b64.encode(payload).as_bytes()).await;
    let mut echoed = Vec::new();
    while echoed.len() < payload.len() {
        let frame = client.read_frame().await.expect("an echo");
        assert_eq!(
            frame.opcode, 0x1,
            "base64 mode answers with text frames: {frame:?}"
        );
        echoed.extend(b64.decode(&frame.payload).expect("base64 text"));
    }
    assert_eq!(echoed, payload);
}

#[tokio::test]
async fn upgrade_answers_101_with_the_rfc_accept_key() {
    let proxy = proxy().await;
    let (mut client, head) = RawClient::connect(proxy.addr, None).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(
        header(&head, "sec-websocket-accept"),
        Some(ACCEPT),
        "key {KEY}: {head}"
    );
    assert!(
        header(&head, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
        "{head}"
    );
    assert!(
        header(&head, "connection").is_some_and(|v| v.eq_ignore_ascii_case("upgrade")),
        "{head}"
    );
    assert_eq!(header(&head, "sec-websocket-protocol"), None, "{head}");
    assert_eq!(
        header(&head, "sec-websocket-extensions"),
        None,
        "no permessage-deflate: {head}"
    );
    assert_binary_mode(&mut client).await;
    proxy.stop().await;
}

/// The accept key for keys chosen until the answers have used every character of the base64
/// alphabet (`+` and `/` included) and its `=` padding, each checked against SHA-1 and
/// base64 computed here independently of the server (the `sha1` crate, and an encoder written
/// below): an alphabet slip in the server's encoding cannot hide behind one test vector.
#[tokio::test]
async fn accept_keys_are_right_across_the_whole_base64_alphabet() {
    use sha1::Digest as _;
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    fn encode(bytes: &[u8]) -> String {
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.len();
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let v = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
            for i in 0..4 {
                if i <= n {
                    out.push(ALPHABET[(v >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
    let proxy = proxy().await;
    let mut seen = std::collections::HashSet::new();
    let mut keys = 0;
    for seed in 0u32.. {
        if ALPHABET.iter().all(|c| seen.contains(c)) {
            break;
        }
        assert!(seed < 2000, "alphabet still not covered: {seen:?}");
        let raw: Vec<u8> = (0..16u32)
            .map(|i| (seed.wrapping_mul(2654435761).wrapping_add(i * 40503) >> 7) as u8)
            .collect();
        let key = encode(&raw);
        let mut sha = sha1::Sha1::new();
        sha.update(key.as_bytes());
        sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
        let expected = encode(&sha.finalize());
        let stream = TcpStream::connect(proxy.addr).await.unwrap();
        let mut client = RawClient::new(stream);
        let request = upgrade_request("/", "").replace(KEY, &key);
        let head = client.request(&request).await;
        assert!(head.starts_with("HTTP/1.1 101 "), "key {key}: {head}");
        assert_eq!(
            header(&head, "sec-websocket-accept"),
            Some(expected.as_str()),
            "key {key}"
        );
        assert!(
            expected.ends_with('='),
            "a SHA-1 digest is 20 bytes: one `=`"
        );
        seen.extend(expected.bytes());
        keys += 1;
    }
    eprintln!("{keys} keys covered the base64 alphabet");
    proxy.stop().await;
}

#[tokio::test]
async fn versions_7_8_and_13_are_accepted() {
    let proxy = proxy().await;
    for version in ["7", "8", "13"] {
        let mut client = RawClient::new(TcpStream::connect(proxy.addr).await.unwrap());
        let head = client
            .request(&request_with("GET", Some(version), Some(KEY), ""))
            .await;
        assert_eq!(status(&head), 101, "version {version}: {head}");
        assert_eq!(header(&head, "sec-websocket-accept"), Some(ACCEPT));
        assert_binary_mode(&mut client).await;
    }
    proxy.stop().await;
}

#[tokio::test]
async fn unsupported_or_missing_version_gets_400_advertising_version_13() {
    let proxy = proxy().await;
    for version in [Some("12"), Some("14"), Some("thirteen"), None] {
        let (head, body) = exchange(
            proxy.addr,
            request_with("GET", version, Some(KEY), "").as_bytes(),
        )
        .await;
        assert_eq!(status(&head), 400, "version {version:?}: {head}");
        let advertised = header(&head, "sec-websocket-version").unwrap_or_default();
        assert!(
            advertised.split(',').any(|v| v.trim() == "13"),
            "the 400 must advertise version 13: {head}"
        );
        let body = String::from_utf8(body).unwrap();
        assert!(
            body.to_lowercase().contains("version"),
            "no reason: {body:?}"
        );
    }
    proxy.stop().await;
}

#[tokio::test]
async fn missing_or_malformed_key_gets_400_with_a_reason() {
    let proxy = proxy().await;
    // Absent; 8 bytes of base64 (not 16); 24 characters that are not base64.
    for key in [None, Some("c2hvcnQ="), Some("!!!!!!!!!!!!!!!!!!!!!!==")] {
        let (head, body) = exchange(
            proxy.addr,
            request_with("GET", Some("13"), key, "").as_bytes(),
        )
        .await;
        assert_eq!(status(&head), 400, "key {key:?}: {head}");
        assert_eq!(header(&head, "sec-websocket-accept"), None);
        let body = String::from_utf8(body).unwrap();
        assert!(body.contains("Sec-WebSocket-Key"), "{body}");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn upgrade_with_a_method_other_than_get_gets_400() {
    let proxy = proxy().await;
    let (head, body) = exchange(
        proxy.addr,
        request_with("POST", Some("13"), Some(KEY), "Content-Length: 0\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status(&head), 400, "{head}");
    let body = String::from_utf8(body).unwrap();
    assert!(body.contains("GET"), "{body}");
    proxy.stop().await;
}

#[tokio::test]
async fn requests_without_upgrade_get_405_for_get_head_and_post() {
    let proxy = proxy().await;
    let requests = [
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "GET /websockify HTTP/1.1\r\nHost: 127.0.0.1\r\nSec-WebSocket-Key: DKURYVK9cRFul1vOZVA56Q==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
        "HEAD / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello",
    ];
    for raw in requests {
        let (head, body) = exchange(proxy.addr, raw.as_bytes()).await;
        let first_line = raw.lines().next().unwrap();
        assert_eq!(status(&head), 405, "{first_line}: {head}");
        // No method alone reaches anything here (RFC 9110 §10.2.1: an empty Allow says so);
        // `Allow: GET` would send a client round in a circle.
        assert_eq!(header(&head, "allow"), Some(""), "{first_line}: {head}");
        if raw.starts_with("HEAD ") {
            assert!(body.is_empty());
        } else {
            let body = String::from_utf8(body).unwrap();
            assert!(body.contains("WebSocket"), "{first_line}: {body}");
        }
    }
    proxy.stop().await;
}

#[tokio::test]
async fn upgrade_and_connection_tokens_are_matched_case_insensitively_in_lists() {
    let proxy = proxy().await;
    // Firefox sends "Connection: keep-alive, Upgrade"; some clients capitalise "WebSocket".
    let raw = format!(
        "GET /websockify HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: WebSocket\r\n\
         Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    let mut client = RawClient::new(TcpStream::connect(proxy.addr).await.unwrap());
    let head = client.request(&raw).await;
    assert_eq!(status(&head), 101, "{head}");
    assert_eq!(header(&head, "sec-websocket-accept"), Some(ACCEPT));
    assert_binary_mode(&mut client).await;
    proxy.stop().await;
}

#[tokio::test]
async fn binary_is_chosen_anywhere_in_the_offered_list() {
    let proxy = proxy().await;
    let offers: [&[&str]; 5] = [
        &["binary"],
        &["base64, binary"],
        &["  chat ,binary  , base64"],
        &["base64,binary"],
        &["chat", "binary"],
    ];
    for offer in offers {
        let (mut client, head) = upgrade_offering(proxy.addr, offer).await;
        assert_eq!(
            header(&head, "sec-websocket-protocol"),
            Some("binary"),
            "offered {offer:?}: {head}"
        );
        assert_binary_mode(&mut client).await;
    }
    proxy.stop().await;
}

#[tokio::test]
async fn base64_is_chosen_when_offered_without_binary() {
    let proxy = proxy().await;
    let offers: [&[&str]; 3] = [&["base64"], &[" chat , base64 "], &["chat", "base64"]];
    for offer in offers {
        let (mut client, head) = upgrade_offering(proxy.addr, offer).await;
        assert_eq!(
            header(&head, "sec-websocket-protocol"),
            Some("base64"),
            "offered {offer:?}: {head}"
        );
        assert_base64_mode(&mut client).await;
    }
    proxy.stop().await;
}

#[tokio::test]
async fn unknown_subprotocols_get_101_without_a_protocol_header_in_binary_mode() {
    let proxy = proxy().await;
    let offers: [&[&str]; 3] = [&["chat, superchat"], &["Binary"], &["binaryx, base64x"]];
    for offer in offers {
        let (mut client, head) = upgrade_offering(proxy.addr, offer).await;
        assert_eq!(
            header(&head, "sec-websocket-protocol"),
            None,
            "offered {offer:?}: {head}"
        );
        assert_binary_mode(&mut client).await;
    }
    proxy.stop().await;
}

#[tokio::test]
async fn no_protocol_header_means_no_protocol_answer_and_binary_mode() {
    let proxy = proxy().await;
    let (mut client, head) = upgrade_offering(proxy.addr, &[]).await;
    assert_eq!(header(&head, "sec-websocket-protocol"), None, "{head}");
    assert_binary_mode(&mut client).await;
    proxy.stop().await;
}

#[tokio::test]
async fn frames_pipelined_with_the_upgrade_request_are_relayed() {
    let proxy = proxy().await;
    let mut bytes =
        upgrade_request("/websockify", "Sec-WebSocket-Protocol: binary\r\n").into_bytes();
    bytes.extend(masked_frame(true, 0x2, b"first", [1, 2, 3, 4]));
    bytes.extend(masked_frame(false, 0x2, b"sec", [5, 6, 7, 8]));
    bytes.extend(masked_frame(true, 0x0, b"ond", [9, 10, 11, 12]));
    let mut client = RawClient::new(TcpStream::connect(proxy.addr).await.unwrap());
    client.send_raw(&bytes).await;
    let head = client.read_head().await;
    assert_eq!(status(&head), 101, "{head}");
    assert_eq!(client.read_data(11).await, b"firstsecond");
    proxy.stop().await;
}

#[tokio::test]
async fn base64_frames_pipelined_with_the_upgrade_request_are_relayed() {
    let proxy = proxy().await;
    let mut bytes =
        upgrade_request("/websockify", "Sec-WebSocket-Protocol: base64\r\n").into_bytes();
    // "pipelined" in base64.
    bytes.extend(masked_frame(true, 0x1, b"cGlwZWxpbmVk", [1, 2, 3, 4]));
    let mut client = RawClient::new(TcpStream::connect(proxy.addr).await.unwrap());
    client.send_raw(&bytes).await;
    let head = client.read_head().await;
    assert_eq!(
        header(&head, "sec-websocket-protocol"),
        Some("base64"),
        "{head}"
    );
    let frame = client.read_frame().await.expect("an echo");
    assert_eq!(frame.opcode, 0x1);
    assert_eq!(frame.payload, b"cGlwZWxpbmVk");
    proxy.stop().await;
}

#[tokio::test]
async fn silent_client_is_dropped_after_the_handshake_timeout() {
    let proxy = proxy().await;
    let began = Instant::now();
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let got = read_until_dropped(&mut stream).await;
    let waited = began.elapsed();
    assert!(
        got.is_empty(),
        "no response expected, got {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(waited >= HANDSHAKE_TIMEOUT, "dropped too early: {waited:?}");
    assert!(waited < DROP_DEADLINE, "dropped too late: {waited:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn client_that_never_finishes_its_request_head_is_dropped() {
    let proxy = proxy().await;
    let began = Instant::now();
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /websockify HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let got = read_until_dropped(&mut stream).await;
    let waited = began.elapsed();
    assert!(
        got.is_empty(),
        "no response expected, got {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(waited >= HANDSHAKE_TIMEOUT, "dropped too early: {waited:?}");
    assert!(waited < DROP_DEADLINE, "dropped too late: {waited:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn client_trickling_its_request_head_is_dropped_despite_sending() {
    let proxy = proxy().await;
    let began = Instant::now();
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let request = upgrade_request("/websockify", "");
    let mut bytes = request.as_bytes().iter();
    // One byte every 20 ms: the whole head would need several seconds.
    let got = bounded("the server to drop a trickling client", async {
        let mut got = Vec::new();
        loop {
            let Some(&b) = bytes.next() else {
                panic!("the whole head was sent without a drop");
            };
            if stream.write_all(&[b]).await.is_err() {
                return got;
            }
            let mut chunk = [0u8; 1024];
            match tokio::time::timeout(Duration::from_millis(20), stream.read(&mut chunk)).await {
                Err(_) => {}
                Ok(Ok(0)) | Ok(Err(_)) => return got,
                Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let waited = began.elapsed();
    assert!(
        got.is_empty(),
        "no response expected, got {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(waited >= HANDSHAKE_TIMEOUT, "dropped too early: {waited:?}");
    assert!(waited < DROP_DEADLINE, "dropped too late: {waited:?}");
    proxy.stop().await;
}

/// An upgrade request padded with one filler header to exactly `len` bytes.
fn head_of_len(len: usize) -> String {
    let base = upgrade_request("/websockify", "X-Filler: \r\n");
    assert!(len > base.len());
    upgrade_request(
        "/websockify",
        &format!("X-Filler: {}\r\n", "a".repeat(len - base.len())),
    )
}

#[tokio::test]
async fn request_head_of_exactly_the_size_limit_is_accepted() {
    let proxy = proxy().await;
    let head = head_of_len(MAX_HEAD_BYTES);
    assert_eq!(head.len(), 16 * 1024);
    let mut client = RawClient::new(TcpStream::connect(proxy.addr).await.unwrap());
    let answer = client.request(&head).await;
    assert_eq!(status(&answer), 101, "{answer}");
    assert_binary_mode(&mut client).await;
    proxy.stop().await;
}

#[tokio::test]
async fn unfinished_request_head_filling_the_size_limit_gets_431_and_is_closed() {
    let proxy = proxy().await;
    // 16 KiB without the blank line: the server reads all of it, so it can close cleanly.
    let head = head_of_len(MAX_HEAD_BYTES + 2);
    let partial = &head.as_bytes()[..MAX_HEAD_BYTES];
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(partial).await.unwrap();
    let got = String::from_utf8(read_until_dropped(&mut stream).await).unwrap();
    assert!(
        got.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{got:?}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn request_head_over_the_size_limit_gets_431_and_is_closed() {
    let proxy = proxy().await;
    for len in [MAX_HEAD_BYTES + 1, 20 * 1024, 64 * 1024] {
        let head = head_of_len(len);
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        // The server stops reading at the limit; the rest of the write may fail.
        let _ = stream.write_all(head.as_bytes()).await;
        let got = String::from_utf8(read_until_dropped(&mut stream).await).unwrap();
        assert!(
            got.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "head of {len} bytes: {got:?}"
        );
    }
    proxy.stop().await;
}

#[tokio::test]
async fn tungstenite_client_round_trips_over_ws() {
    let proxy = proxy().await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let mut request = format!("ws://127.0.0.1:{}/websockify", proxy.addr.port())
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "binary".parse().unwrap());
    let (mut ws, response) = bounded(
        "tungstenite handshake",
        tokio_tungstenite::client_async(request, stream),
    )
    .await
    .expect("handshake");
    assert_eq!(response.status(), 101);
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        "binary"
    );
    for size in [1usize, 125, 126, 65_535, 65_536, 300_000] {
        let payload: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        bounded("send", ws.send(Message::binary(payload.clone())))
            .await
            .unwrap();
        let mut echoed = Vec::new();
        while echoed.len() < size {
            match bounded("echo", ws.next()).await {
                Some(Ok(Message::Binary(data))) => echoed.extend_from_slice(&data),
                other => panic!("expected binary data, got {other:?}"),
            }
        }
        assert_eq!(echoed, payload, "{size} bytes");
    }
    bounded(
        "close",
        ws.close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        })),
    )
    .await
    .unwrap();
    match bounded("close answer", ws.next()).await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected the close echoed, got {other:?}"),
    }
    proxy.stop().await;
}

#[tokio::test]
async fn upgrade_after_a_405_on_the_same_keep_alive_connection_works() {
    let proxy = proxy().await;
    let mut client = RawClient::new(TcpStream::connect(proxy.addr).await.unwrap());
    // HEAD: a 405 without a body, so the next response head follows directly.
    let head = client
        .request("HEAD /favicon.ico HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await;
    assert_eq!(status(&head), 405, "{head}");
    let next = client.request(&upgrade_request("/websockify", "")).await;
    assert_eq!(status(&next), 101, "{next}");
    assert_eq!(header(&next, "sec-websocket-accept"), Some(ACCEPT));
    assert_binary_mode(&mut client).await;
    proxy.stop().await;
}

#[tokio::test]
async fn an_unreachable_target_is_a_502_before_any_upgrade_and_the_connection_ends() {
    let proxy = start_proxy(settings_to(closed_port().await)).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(upgrade_request("/websockify", "").as_bytes())
        .await
        .unwrap();
    // Everything up to the server's end of the connection: it must close after the refusal.
    let answer = read_until_dropped(&mut stream).await;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert_eq!(status(head), 502, "{head}");
    assert_eq!(header(head, "connection"), Some("close"), "{head}");
    assert_eq!(header(head, "upgrade"), None, "{head}");
    assert_eq!(body, "502 Bad Gateway: Target connection failed\n");
    proxy.stop().await;
}

/// A target that counts the connections made to it (and reads nothing).
async fn counting_target() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let addr = support::tcp_server(move |stream| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(stream);
        }
    })
    .await;
    (addr, count)
}

#[tokio::test]
async fn a_refused_upgrade_ends_the_connection_and_nothing_pipelined_behind_it_is_served() {
    let proxy = proxy().await;
    let bad = request_with("GET", Some("12"), Some(KEY), "");
    let good = upgrade_request("/websockify", "");
    let answer = answer_to(proxy.addr, format!("{bad}{good}").as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    let (head, _) = answer.split_once("\r\n\r\n").unwrap();
    assert_eq!(header(head, "connection"), Some("close"), "{head}");
    assert!(!answer.contains(" 101 "), "{answer}");
    proxy.stop().await;
}

#[tokio::test]
async fn an_upgrade_request_carrying_a_body_is_refused_and_never_reaches_the_target() {
    let (target, connections) = counting_target().await;
    let proxy = start_proxy(settings_to(target)).await;
    // The body is a well-formed masked frame: accepted, it would be relayed after the 101.
    let frame = masked_frame(true, 0x2, b"EVIL", [1, 2, 3, 4]);
    let with_length = format!(
        "{}Content-Length: {}\r\n\r\n",
        request_with("GET", Some("13"), Some(KEY), "")
            .strip_suffix("\r\n")
            .unwrap(),
        frame.len()
    );
    let chunked = format!(
        "{}Transfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        request_with("GET", Some("13"), Some(KEY), "")
            .strip_suffix("\r\n")
            .unwrap(),
        frame.len()
    );
    for head in [with_length, chunked] {
        let mut raw = head.into_bytes();
        raw.extend_from_slice(&frame);
        let answer = answer_to(proxy.addr, &raw).await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        assert!(answer.contains("must not carry a body"), "{answer}");
    }
    // A Content-Length of 0 is no body.
    let zero = format!(
        "{}Content-Length: 0\r\n\r\n",
        request_with("GET", Some("13"), Some(KEY), "")
            .strip_suffix("\r\n")
            .unwrap()
    );
    let mut client = RawClient::new(TcpStream::connect(proxy.addr).await.unwrap());
    assert_eq!(status(&client.request(&zero).await), 101);
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only the upgrade without a body may reach the target"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn an_http_1_0_upgrade_request_gets_400_not_101() {
    let proxy = proxy().await;
    let raw = upgrade_request("/websockify", "").replacen("HTTP/1.1", "HTTP/1.0", 1);
    let answer = answer_to(proxy.addr, raw.as_bytes()).await;
    // hyper answers in the request's version.
    assert!(answer.starts_with("HTTP/1.0 400 "), "{answer}");
    assert!(answer.contains("needs HTTP/1.1"), "{answer}");
    proxy.stop().await;
}

#[tokio::test]
async fn duplicate_key_or_version_headers_get_400() {
    let proxy = proxy().await;
    let base = request_with("GET", Some("13"), Some(KEY), "");
    let base = base.trim_end_matches("\r\n");
    for (extra, reason) in [
        (
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            "More than one Sec-WebSocket-Key",
        ),
        (
            format!("Sec-WebSocket-Key: {KEY}\r\n").leak() as &str,
            "More than one Sec-WebSocket-Key",
        ),
        (
            "Sec-WebSocket-Version: 13\r\n",
            "More than one Sec-WebSocket-Version",
        ),
        (
            "Sec-WebSocket-Version: 8\r\n",
            "More than one Sec-WebSocket-Version",
        ),
    ] {
        let raw = format!("{base}\r\n{extra}\r\n");
        let answer = answer_to(proxy.addr, raw.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{extra}: {answer}");
        assert!(answer.contains(reason), "{extra}: {answer}");
    }
    proxy.stop().await;
}

/// Sends `raw` on a new connection; returns everything the server sent before it ended the
/// connection.
async fn answer_to(addr: SocketAddr, raw: &[u8]) -> String {
    String::from_utf8_lossy(&send_and_read_all(addr, raw).await).into_owned()
}
