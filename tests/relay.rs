//! The relay end to end: real proxy, real TCP targets, real and raw WebSocket clients.

use websockify_test_support as support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use support::*;

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

#[tokio::test]
async fn binary_round_trip_with_a_real_websocket_client() {
    let proxy = start_proxy(settings_to(echo_server().await)).await;
    let mut request = format!("ws://{}/websockify", proxy.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "binary".parse().unwrap());
    let (mut ws, response) = bounded("connect", tokio_tungstenite::connect_async(request))
        .await
        .unwrap();
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        "binary"
    );
    for size in [1usize, 125, 126, 65535, 65536, 300_000] {
        let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        ws.send(Message::binary(payload.clone())).await.unwrap();
        let mut echoed = Vec::new();
        while echoed.len() < size {
            match bounded("echo", ws.next()).await.unwrap().unwrap() {
                Message::Binary(data) => echoed.extend_from_slice(&data),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(echoed, payload, "size {size}");
    }
    ws.close(None).await.unwrap();
    proxy.stop().await;
}

#[tokio::test]
async fn base64_round_trip() {
    let proxy = start_proxy(settings_to(echo_server().await)).await;
    let (mut client, head) = RawClient::connect(proxy.addr, Some("base64")).await;
    assert!(head
        .to_ascii_lowercase()
        .contains("sec-websocket-protocol: base64"));
    let data = b"base64 mode: \x00\x01\xff bytes".to_vec();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
    // Split the base64 text across two fragments, off the 4-character grid.
    client.send(false, TEXT, &encoded.as_bytes()[..5]).await;
    client.send(true, 0x0, &encoded.as_bytes()[5..]).await;
    let mut decoded = Vec::new();
    while decoded.len() < data.len() {
        let frame = client.read_frame().await.unwrap();
        assert_eq!(frame.opcode, TEXT, "base64 mode answers with text frames");
        decoded.extend(
            base64::engine::general_purpose::STANDARD
                .decode(&frame.payload)
                .unwrap(),
        );
    }
    assert_eq!(decoded, data);
    proxy.stop().await;
}

#[tokio::test]
async fn invalid_base64_closes_with_1007() {
    let proxy = start_proxy(settings_to(echo_server().await)).await;
    let (mut client, _) = RawClient::connect(proxy.addr, Some("base64")).await;
    client.send(true, TEXT, b"not*base64").await;
    assert_eq!(client.read_close().await.0, 1007);
    client.expect_eof().await;
    proxy.stop().await;
}

#[tokio::test]
async fn text_frames_are_forwarded_as_their_utf8_bytes() {
    let proxy = start_proxy(settings_to(echo_server().await)).await;
    let (mut client, _) = RawClient::connect(proxy.addr, None).await;
    let text = "κόσμε, hello";
    client.send(true, TEXT, text.as_bytes()).await;
    assert_eq!(client.read_data(text.len()).await, text.as_bytes());
    proxy.stop().await;
}

#[tokio::test]
async fn invalid_utf8_split_across_fragments_closes_with_1007() {
    let proxy = start_proxy(settings_to(echo_server().await)).await;
    let (mut client, _) = RawClient::connect(proxy.addr, None).await;
    // "κ" is CE BA: send CE in one fragment, then a byte that cannot continue it.
    client.send(false, TEXT, b"ok \xce").await;
    client.send(true, 0x0, b"A").await;
    assert_eq!(client.read_close().await.0, 1007);
    client.expect_eof().await;
    proxy.stop().await;
}

#[tokio::test]
async fn text_message_ending_mid_character_closes_with_1007() {
    let proxy = start_proxy(settings_to(echo_server().await)).await;
    let (mut client, _) = RawClient::connect(proxy.addr, None).await;
    client.send(true, TEXT, b"cut \xe2\x82").await;
    assert_eq!(client.read_close().await.0, 1007);
    proxy.stop().await;
}

async fn expect_protocol_error(frame: Vec<u8>) {
    let proxy = start_proxy(settings_to(echo_server().await)).await;
    let (mut client, _) = RawClient::connect(proxy.addr, None).await;
    client.send_raw(&frame).await;
    let (code, reason) = client.read_close().await;
    assert_eq!(code, 1002, "reason: {reason}");
    client.expect_eof().await;
    proxy.stop().await;
}

#[tokio::test]
async fn unmasked_client_frame_closes_with_1002() {
    expect_protocol_error(vec![0x82, 0x03, b'a', b'b', b'c']).await;
}

#[tokio::test]
async fn reserved_bits_close_with_1002() {
    expect_protocol_error(masked_frame(true, 0x40 | BINARY, b"x", [1, 2, 3, 4])).await;
}

#[tokio::test]
async fn reserved_opcodes_close_with_1002() {
    expect_protocol_error(masked_frame(true, 0x3, b"x", [1, 2, 3, 4])).await;
    expect_protocol_error(masked_frame(true, 0xB, b"", [1, 2, 3, 4])).await;
}

#[tokio::test]
async fn control_frame_over_125_bytes_closes_with_1002() {
    expect_protocol_error(masked_frame(true, PING, &[7; 126], [1, 2, 3, 4])).await;
}

#[tokio::test]
async fn fragmented_control_frame_closes_with_1002() {
    expect_protocol_error(masked_frame(false, PING, b"x", [1, 2, 3, 4])).await;
}

#[tokio::test]
async fn length_with_top_bit_set_closes_with_1002_without_allocating() {
    let mut frame = vec![0x82, 0xFF];
    frame.extend_from_slice(&u64::MAX.to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    expect_protocol_error(frame).await;
}

#[tokio::test]
async fn a_length_of_exactly_2_pow_63_closes_with_1002() {
    let mut frame = vec![0x82, 0xFF];
    frame.extend_from_slice(&(1u64 << 63).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
    expect_protocol_error(frame).await;
}

#[tokio::test]
async fn ping_is_answered_with_a_pong_carrying_the_same_payload() {
    let proxy = start_proxy(settings_to(echo_server().await)).await;
    let (mut client, _) = RawClient::connect(proxy.addr, None).await;
    client.send(true, PING, b"are you there?").await;
    let pong = client.read_frame().await.unwrap();
    assert_eq!(pong.opcode, PONG);
    assert_eq!(pong.payload, b"are you there?");
    proxy.stop().await;
}

#[tokio::test]
async fn fragmented_message_with_interleaved_pings_reaches_the_target_in_order() {
    let proxy = start_proxy(settings_to(echo_server().await)).await;
    let (mut client, _) = RawClient::connect(proxy.addr, None).await;
    let mut expected = Vec::new();
    for i in 0..50u8 {
        let piece = vec![i; 1000];
        expected.extend_from_slice(&piece);
        let opcode = if i == 0 { BINARY } else { 0x0 };
        client.send(i == 49, opcode, &piece).await;
        client.send(true, PING, &[i]).await;
    }
    let mut data = Vec::new();
    let mut pongs = Vec::new();
    while data.len() < expected.len() || pongs.len() < 50 {
        let frame = client.read_frame().await.unwrap();
        match frame.opcode {
            BINARY => data.extend_from_slice(&frame.payload),
            PONG => pongs.push(frame.payload[0]),
            other => panic!("unexpected opcode {other}"),
        }
    }
    assert_eq!(data, expected);
    assert_eq!(pongs, (0..50).collect::<Vec<u8>>());
    proxy.stop().await;
}

#[tokio::test]
async fn target_close_sends_1000_target_closed_after_its_last_bytes() {
    let target = tcp_server(|mut stream| async move {
        let _ = stream.write_all(b"last words").await;
    })
    .await;
    let proxy = start_proxy(settings_to(target)).await;
    let (mut client, _) = RawClient::connect(proxy.addr, None).await;
    assert_eq!(client.read_data(10).await, b"last words");
    assert_eq!(
        client.read_close().await,
        (1000, "Target closed".to_string())
    );
    // The proxy waits for our close reply, then ends the connection.
    client.send(true, CLOSE, &close_payload(1000, "")).await;
    client.expect_eof().await;
    proxy.stop().await;
}

#[tokio::test]
async fn client_close_is_echoed_and_the_target_socket_closed() {
    let target_saw_eof = Arc::new(AtomicBool::new(false));
    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
    let eof_tx = Arc::new(std::sync::Mutex::new(Some(eof_tx)));
    let flag = target_saw_eof.clone();
    let target = tcp_server(move |mut stream| {
        let flag = flag.clone();
        let eof_tx = eof_tx.clone();
        async move {
            let mut all = Vec::new();
            let _ = stream.read_to_end(&mut all).await;
            flag.store(true, Ordering::SeqCst);
            if let Some(tx) = eof_tx.lock().unwrap().take() {
                let _ = tx.send(all);
            }
        }
    })
    .await;
    let proxy = start_proxy(settings_to(target)).await;
    let (mut client, _) = RawClient::connect(proxy.addr, None).await;
    client.send(true, BINARY, b"before close").await;
    client
        .send(true, CLOSE, &close_payload(4001, "going away"))
        .await;
    assert_eq!(client.read_close().await, (4001, "going away".into()));
    client.expect_eof().await;
    // Data sent before the close still reached the target, and then it saw end of stream.
    let received = bounded("target EOF", eof_rx).await.unwrap();
    assert_eq!(received, b"before close");
    assert!(target_saw_eof.load(Ordering::SeqCst));
    proxy.stop().await;
}

/// A target that reads nothing until told to, then everything until end of stream; what it
/// read comes back on the channel.
async fn target_waiting_for(
    go: tokio::sync::watch::Receiver<bool>,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let target = tcp_server(move |mut stream| {
        let (mut go, tx) = (go.clone(), tx.clone());
        async move {
            let _ = go.wait_for(|go| *go).await;
            let mut all = Vec::new();
            let _ = stream.read_to_end(&mut all).await;
            let _ = tx.send(all);
        }
    })
    .await;
    (target, rx)
}

/// The close handshake never waits for the target: the client's close is answered while the
/// target has not read a byte (the target only starts reading once the client has the
/// answer, so a proxy that waited would deadlock, caught by the bounded wait). The data sent
/// before the close still reaches the target, followed by end of stream.
#[tokio::test]
async fn a_client_close_is_answered_before_a_slow_target_reads_anything() {
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let (target, mut received) = target_waiting_for(go_rx).await;
    let proxy = start_proxy(settings_to(target)).await;
    let (mut client, _) = RawClient::connect(proxy.addr, None).await;
    let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    client.send(true, BINARY, &data).await;
    client.send(true, CLOSE, &close_payload(1000, "")).await;
    assert_eq!(client.read_close().await.0, 1000);
    client.expect_eof().await;
    go_tx.send(true).unwrap();
    let got = bounded("the target's data and EOF", received.recv()).await;
    assert_eq!(got, Some(data));
    proxy.stop().await;
}

/// A target that reads slowly (16 KiB every 2 ms, ~8 MB/s) holds the client back, and the
/// client's close, queued behind 4 MiB of data, is answered; the target gets every byte
/// before its end of stream.
#[tokio::test]
async fn a_slow_reading_target_gets_every_byte_before_the_close() {
    let (tx, mut received) = tokio::sync::mpsc::unbounded_channel();
    let target = tcp_server(move |mut stream| {
        let tx = tx.clone();
        async move {
            let mut all = Vec::new();
            let mut chunk = vec![0u8; 16 * 1024];
            loop {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => all.extend_from_slice(&chunk[..n]),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let _ = tx.send(all);
        }
    })
    .await;
    let proxy = start_proxy(settings_to(target)).await;
    let (client, _) = RawClient::connect(proxy.addr, None).await;
    let data: Vec<u8> = (0..4u32 << 20).map(|i| (i % 253) as u8).collect();
    let (read_half, mut write_half) = client.stream.into_split();
    let to_send = data.clone();
    let writer = tokio::spawn(async move {
        for piece in to_send.chunks(64 * 1024) {
            let frame = masked_frame(true, BINARY, piece, [9, 8, 7, 6]);
            write_half.write_all(&frame).await.unwrap();
        }
        let close = masked_frame(true, CLOSE, &close_payload(1000, "done"), [1, 2, 3, 4]);
        write_half.write_all(&close).await.unwrap();
        write_half
    });
    let mut client = RawClient::new(read_half);
    assert_eq!(client.read_close().await, (1000, "done".into()));
    client.expect_eof().await;
    bounded("the writer", writer).await.unwrap();
    let got = bounded("the target's data and EOF", received.recv())
        .await
        .unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the target's bytes differ from what was sent");
    proxy.stop().await;
}

#[tokio::test]
async fn frames_pipelined_with_the_upgrade_request_are_relayed() {
    let proxy = start_proxy(settings_to(echo_server().await)).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let mut client = RawClient::new(stream);
    let mut bytes = upgrade_request("/", "").into_bytes();
    bytes.extend(masked_frame(true, BINARY, b"eager", [9, 9, 9, 9]));
    client.send_raw(&bytes).await;
    let head = client.read_head().await;
    assert!(head.starts_with("HTTP/1.1 101"));
    assert_eq!(client.read_data(5).await, b"eager");
    proxy.stop().await;
}

/// A 64 MiB message is forwarded while it is still arriving: the target sees its first bytes
/// before the client has sent the rest, so the proxy cannot be holding the message whole.
#[tokio::test]
async fn a_64_mib_message_streams_through() {
    const SIZE: u64 = 64 << 20;
    let (target, received) = counting_sink().await;
    let proxy = start_proxy(settings_to(target)).await;
    let (mut client, _) = RawClient::connect(proxy.addr, None).await;
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut header = vec![0x82, 0xFF];
    header.extend_from_slice(&SIZE.to_be_bytes());
    header.extend_from_slice(&mask);
    client.send_raw(&header).await;
    let chunk: Vec<u8> = (0..1 << 20).map(|i| (i as u8) ^ mask[i % 4]).collect();
    // First half of the message.
    for _ in 0..32 {
        client.send_raw(&chunk).await;
    }
    bounded("first half at the target", async {
        while received.load(Ordering::SeqCst) < SIZE / 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(received.load(Ordering::SeqCst), SIZE / 2);
    for _ in 0..32 {
        client.send_raw(&chunk).await;
    }
    bounded("whole message at the target", async {
        while received.load(Ordering::SeqCst) < SIZE {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(received.load(Ordering::SeqCst), SIZE);
    proxy.stop().await;
}

/// Waits until `counter` stops growing for a while; returns its value.
async fn plateau(counter: &AtomicU64) -> u64 {
    bounded("writes to stall", async {
        let mut last = counter.load(Ordering::SeqCst);
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = counter.load(Ordering::SeqCst);
            if now == last {
                return now;
            }
            last = now;
        }
    })
    .await
}

/// Sockets buffer a few MiB in the kernel; the proxy itself may add one 64 KiB buffer per
/// direction. Anything far beyond that means the proxy is queueing.
const BOUND: u64 = 24 << 20;
const FLOOD: u64 = 256 << 20;

#[tokio::test]
async fn a_client_that_stops_reading_stops_the_proxy_reading_the_target() {
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let target = tcp_server(move |mut stream| {
        let counter = counter.clone();
        async move {
            let chunk = vec![0x5A; 64 * 1024];
            while counter.load(Ordering::SeqCst) < FLOOD {
                match stream.write(&chunk).await {
                    Ok(n) => counter.fetch_add(n as u64, Ordering::SeqCst),
                    Err(_) => return,
                };
            }
        }
    })
    .await;
    let proxy = start_proxy(settings_to(target)).await;
    let (mut client, _) = RawClient::connect(proxy.addr, None).await;
    // Read nothing: the target must be held back far below what it wants to send.
    let stalled_at = plateau(&written).await;
    eprintln!("target stalled after writing {stalled_at} bytes");
    assert!(
        stalled_at < BOUND,
        "target wrote {stalled_at} bytes to a client that reads nothing"
    );
    // And everything it did write arrives once the client reads.
    let data = client.read_data(stalled_at as usize).await;
    assert!(data.iter().all(|b| *b == 0x5A));
    proxy.stop().await;
}

#[tokio::test]
async fn a_target_that_stops_reading_stops_the_proxy_reading_the_client() {
    // The target accepts and then never reads.
    let (hold_tx, hold_rx) = tokio::sync::watch::channel(());
    let target = tcp_server(move |stream| {
        let mut hold = hold_rx.clone();
        async move {
            let _ = hold.changed().await;
            drop(stream);
        }
    })
    .await;
    let proxy = start_proxy(settings_to(target)).await;
    let (client, _) = RawClient::connect(proxy.addr, None).await;
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let mut stream = client.stream;
    let writer = tokio::spawn(async move {
        let frame = masked_frame(true, BINARY, &[0xA5; 60_000], [1, 2, 3, 4]);
        while counter.load(Ordering::SeqCst) < FLOOD {
            if stream.write_all(&frame).await.is_err() {
                return;
            }
            counter.fetch_add(frame.len() as u64, Ordering::SeqCst);
        }
    });
    let stalled_at = plateau(&sent).await;
    eprintln!("client stalled after writing {stalled_at} bytes");
    assert!(
        stalled_at < BOUND,
        "client wrote {stalled_at} bytes to a target that reads nothing"
    );
    writer.abort();
    drop(hold_tx);
    proxy.stop().await;
}

#[tokio::test]
async fn an_idle_session_survives_and_still_relays() {
    let proxy = start_proxy(settings_to(echo_server().await)).await;
    let (mut client, _) = RawClient::connect(proxy.addr, Some("binary")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    client.send(true, BINARY, b"still here").await;
    assert_eq!(client.read_data(10).await, b"still here");
    proxy.stop().await;
}

#[tokio::test]
async fn shutdown_ends_open_sessions() {
    let proxy = start_proxy(settings_to(echo_server().await)).await;
    let (mut client, _) = RawClient::connect(proxy.addr, None).await;
    proxy.stop().await;
    client.expect_eof().await;
}

#[tokio::test]
async fn run_once_exits_after_one_websocket_session() {
    let mut settings = settings_to(echo_server().await);
    settings.run_once = true;
    let proxy = start_proxy(settings).await;
    // A plain HTTP request does not count as the session.
    let mut probe = RawClient::new(TcpStream::connect(proxy.addr).await.unwrap());
    let head = probe
        .request("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    assert!(head.starts_with("HTTP/1.1 405"));
    let (mut client, _) = RawClient::connect(proxy.addr, None).await;
    client.send(true, BINARY, b"once").await;
    assert_eq!(client.read_data(4).await, b"once");
    assert!(proxy.is_running());
    client.send(true, CLOSE, &close_payload(1000, "")).await;
    client.read_close().await;
    proxy.finished().await;
}

#[tokio::test]
async fn idle_timeout_exits_when_no_connection_is_open() {
    let mut settings = settings_to(echo_server().await);
    settings.idle_timeout = Some(Duration::from_millis(300));
    let proxy = start_proxy(settings).await;
    proxy.finished().await;
}

/// `--idle-timeout` counts from the end of the last connection: a session three times longer
/// than it keeps the server accepting, and the server leaves once the session is over. (Once
/// the timeout fires the listener closes; running sessions would still finish, so "still
/// running" alone would not tell.)
#[tokio::test]
async fn idle_timeout_waits_while_a_session_is_open_and_counts_from_its_end() {
    let idle = Duration::from_millis(300);
    let mut settings = settings_to(echo_server().await);
    settings.idle_timeout = Some(idle);
    let proxy = start_proxy(settings).await;
    let (mut client, _) = RawClient::connect(proxy.addr, None).await;
    // What is tested is that nothing happens for a while: the wait is the test.
    for round in 0..6u8 {
        tokio::time::sleep(idle / 2).await;
        client.send(true, BINARY, &[round]).await;
        assert_eq!(client.read_data(1).await, [round]);
    }
    // A session that is open but quiet counts too.
    tokio::time::sleep(idle * 2).await;
    assert!(
        TcpStream::connect(proxy.addr).await.is_ok(),
        "the listener closed with a session open"
    );
    client.send(true, CLOSE, &close_payload(1000, "")).await;
    client.read_close().await;
    proxy.finished().await;
}

/// The handshake timeout bounds the way to the 101, not the session after it: a session, busy
/// then quiet, outlives it several times over.
#[tokio::test]
async fn the_handshake_timeout_does_not_touch_an_open_session() {
    let handshake = Duration::from_millis(200);
    let mut settings = settings_to(echo_server().await);
    settings.handshake_timeout = handshake;
    let proxy = start_proxy(settings).await;
    let (mut client, _) = RawClient::connect(proxy.addr, None).await;
    for round in 0..4u8 {
        tokio::time::sleep(handshake).await;
        client.send(true, BINARY, &[round]).await;
        assert_eq!(client.read_data(1).await, [round]);
    }
    // Quiet for three times the timeout, then still relaying.
    tokio::time::sleep(handshake * 3).await;
    client.send(true, BINARY, b"still").await;
    assert_eq!(client.read_data(5).await, b"still");
    proxy.stop().await;
}

#[tokio::test]
async fn timeout_stops_accepting_but_lets_sessions_finish() {
    let mut settings = settings_to(echo_server().await);
    settings.timeout = Some(Duration::from_millis(500));
    let proxy = start_proxy(settings).await;
    let addr = proxy.addr;
    let (mut client, _) = RawClient::connect(addr, None).await;
    // Past the timeout the listener is gone, but the session still works.
    bounded("listener to close", async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    client.send(true, BINARY, b"late").await;
    assert_eq!(client.read_data(4).await, b"late");
    assert!(proxy.is_running());
    client.send(true, CLOSE, &close_payload(1000, "")).await;
    client.read_close().await;
    proxy.finished().await;
}

/// A small frame that trickles in reaches the target in one write, as it was sent: frames
/// that fit in a buffer are held until whole (bigger ones stream, see the 64 MiB test).
#[tokio::test]
async fn a_small_frame_sent_in_pieces_reaches_the_target_in_one_piece() {
    let (reads_tx, mut reads_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let target = tcp_server(move |mut stream| {
        let reads_tx = reads_tx.clone();
        async move {
            let mut buf = vec![0u8; 256 * 1024];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 || reads_tx.send(n).is_err() {
                    break;
                }
            }
        }
    })
    .await;
    let proxy = start_proxy(settings_to(target)).await;
    let (mut client, _) = RawClient::connect(proxy.addr, None).await;
    let payload: Vec<u8> = (0..60_000u32).map(|i| (i % 253) as u8).collect();
    let frame = masked_frame(true, BINARY, &payload, [5, 6, 7, 8]);
    for piece in frame.chunks(6_000) {
        client.send_raw(piece).await;
        client.stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let first = bounded("target read", reads_rx.recv()).await.unwrap();
    assert_eq!(first, payload.len(), "the frame arrived in pieces");
    proxy.stop().await;
}

/// The `base64` subprotocol at the edges of a message: text cut into one-character fragments,
/// an empty message between two others, padded messages back to back (the decoder starts
/// afresh at each message), and the two ways a message can end wrong — cut inside a 4-character
/// group, or padding followed by more text — each 1007.
#[tokio::test]
async fn base64_messages_at_their_edges() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let proxy = start_proxy(settings_to(echo_server().await)).await;
    let (mut client, _) = RawClient::connect(proxy.addr, Some("base64")).await;
    // One character per fragment, off every grid.
    let data = b"\x00\xffone char at a time\x7f".to_vec();
    let text = b64.encode(&data);
    let chars = text.as_bytes();
    client.send(false, TEXT, &chars[..1]).await;
    for c in &chars[1..chars.len() - 1] {
        client.send(false, 0x0, std::slice::from_ref(c)).await;
    }
    client.send(true, 0x0, &chars[chars.len() - 1..]).await;
    assert_eq!(read_base64(&mut client, data.len()).await, data);

    // An empty message, then two padded ones back to back ("QQ==" then "QkM=").
    client.send(true, TEXT, b"").await;
    client.send(true, TEXT, b"QQ==").await;
    client.send(true, TEXT, b"QkM=").await;
    assert_eq!(read_base64(&mut client, 3).await, b"ABC");

    // A message cut inside a group.
    client.send(false, TEXT, b"QUJD").await;
    client.send(true, 0x0, b"RA").await;
    assert_eq!(client.read_close().await.0, 1007);
    proxy.stop().await;

    // Padding, then more text in the same message.
    let proxy = start_proxy(settings_to(echo_server().await)).await;
    let (mut client, _) = RawClient::connect(proxy.addr, Some("base64")).await;
    client.send(false, TEXT, b"QQ==").await;
    client.send(true, 0x0, b"QkM=").await;
    assert_eq!(client.read_close().await.0, 1007);
    proxy.stop().await;
}

/// Base64 text frames from `client`, decoded, until `n` bytes have come.
async fn read_base64(client: &mut RawClient<TcpStream>, n: usize) -> Vec<u8> {
    use base64::Engine as _;
    let mut decoded = Vec::new();
    while decoded.len() < n {
        let frame = client.read_frame().await.expect("a frame");
        assert_eq!(frame.opcode, TEXT);
        decoded.extend(
            base64::engine::general_purpose::STANDARD
                .decode(&frame.payload)
                .expect("our base64"),
        );
    }
    decoded
}
