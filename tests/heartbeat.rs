//! `--heartbeat N`, driving the real binary: a ping every N seconds, a client that answers
//! stays, a silent one is closed (1001) within three intervals, and a ping never lands inside a
//! data frame.

use websockify_test_support as support;

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use support::*;

const PING: u8 = 0x9;
const PONG: u8 = 0xA;

async fn proxy_with_heartbeat(target: std::net::SocketAddr) -> LoggedBinary {
    LoggedBinary::start(&["--heartbeat", "1", "127.0.0.1:0", &target.to_string()]).await
}

#[tokio::test]
async fn pings_arrive_every_interval_and_a_client_that_answers_pongs_stays() {
    let proxy = proxy_with_heartbeat(echo_server().await).await;
    let (mut client, _) = RawClient::connect(proxy.addr, Some("binary")).await;
    let started = Instant::now();
    let mut pings = Vec::new();
    // Four intervals and a half: past the silent bound (two) twice over, answering each ping.
    while started.elapsed() < Duration::from_millis(4500) {
        let frame = client.read_frame().await.expect("the session ended");
        assert_eq!(frame.opcode, PING, "{frame:?}");
        assert!(frame.payload.is_empty() && frame.fin, "{frame:?}");
        pings.push(started.elapsed());
        client.send(true, PONG, &frame.payload).await;
    }
    assert!(pings.len() >= 4, "pings at {pings:?}");
    for pair in pings.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap > Duration::from_millis(700) && gap < Duration::from_millis(1500),
            "pings at {pings:?}"
        );
    }
    // Still relaying.
    client.send(true, 0x2, b"still here").await;
    loop {
        let frame = client.read_frame().await.expect("the session ended");
        if frame.opcode == PING {
            client.send(true, PONG, &[]).await;
            continue;
        }
        assert_eq!(frame.payload, b"still here");
        break;
    }
}

#[tokio::test]
async fn a_client_that_stops_answering_is_closed_with_1001_within_three_intervals() {
    // The target tells the test when its side ends.
    let (ended_tx, mut ended) = mpsc::unbounded_channel();
    let target = tcp_server(move |mut stream| {
        let ended_tx = ended_tx.clone();
        async move {
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut sink).await;
            let _ = ended_tx.send(());
        }
    })
    .await;
    let proxy = proxy_with_heartbeat(target).await;
    let (mut client, _) = RawClient::connect(proxy.addr, Some("binary")).await;
    let opened = Instant::now();
    // Reads (so the close can arrive) but never answers.
    let mut pings = 0;
    let (code, reason) = bounded("the close of a silent client", async {
        loop {
            let frame = client.read_frame().await.expect("ended without a close");
            match frame.opcode {
                PING => pings += 1,
                0x8 => break frame.close(),
                _ => panic!("unexpected {frame:?}"),
            }
        }
    })
    .await;
    let after = opened.elapsed();
    assert_eq!((code, reason.as_str()), (1001, "Client silent"));
    assert!(pings >= 1, "no ping before the close");
    assert!(
        after >= Duration::from_millis(1900) && after < Duration::from_millis(3500),
        "closed after {after:?}"
    );
    client.expect_eof().await;
    bounded("the target's EOF", ended.recv()).await;
}

/// Whether `data` continues the byte pattern the target sends (`i as u8` at offset i).
fn continues_pattern(offset: usize, data: &[u8]) -> bool {
    data.iter()
        .enumerate()
        .all(|(i, b)| *b == ((offset + i) % 251) as u8)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_never_lands_inside_a_data_frame_during_a_long_burst() {
    // 16 MiB at once, read slowly (about three seconds): the proxy's socket buffer stays full,
    // so its frames go out in pieces, and pings fall due while one is half written.
    const TOTAL: usize = 16 << 20;
    let block: std::sync::Arc<Vec<u8>> =
        std::sync::Arc::new((0..TOTAL).map(|i| (i % 251) as u8).collect());
    let target = tcp_server(move |mut stream| {
        let block = block.clone();
        async move {
            for chunk in block.chunks(1 << 16) {
                if stream.write_all(chunk).await.is_err() {
                    return;
                }
            }
            // Keep the session open until the client is done.
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut sink).await;
        }
    })
    .await;
    let proxy = proxy_with_heartbeat(target).await;
    let (mut client, _) = RawClient::connect(proxy.addr, Some("binary")).await;
    let mut received = 0;
    let mut pings = 0;
    let mut data_frames = 0;
    while received < TOTAL {
        // `read_frame` parses every header: a ping inside a data frame would break the payload
        // (the pattern) or the framing itself.
        let frame = client.read_frame().await.expect("the session ended");
        match frame.opcode {
            PING => {
                assert!(frame.fin && frame.payload.is_empty(), "{frame:?}");
                pings += 1;
                client.send(true, PONG, &[]).await;
            }
            0x2 => {
                assert!(frame.fin, "a fragment: {frame:?}");
                assert!(
                    continues_pattern(received, &frame.payload),
                    "payload broken at byte {received}"
                );
                received += frame.payload.len();
                data_frames += 1;
                tokio::time::sleep(Duration::from_millis(12)).await;
            }
            _ => panic!(
                "unexpected {frame:?} after {received} bytes; log: {:?}",
                proxy.lines()
            ),
        }
    }
    assert!(pings >= 2, "{pings} pings among {data_frames} data frames");
}
