//! Scale-out: two instances of the real binary behind a real HAProxy (TCP mode, health checks on
//! `/healthz`) sharing one real `redis-server` token store (TokenRedis). A token added once is
//! served by both; one instance stopped with SIGTERM while clients keep connecting fails no new
//! connection.

use websockify_test_support as support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::haproxy::HaProxy;
use support::metrics::{get, scrape, start, value};
use support::redis::Redis;
use support::*;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error, Message};

const ACCEPTED: &str = "websockify_connections_accepted_total";

/// How one session went.
#[derive(Debug)]
enum Outcome {
    /// Upgraded, echoed, closed with 1000.
    Served,
    /// Upgraded, then closed with 1001 by a draining instance: a session that was open at the
    /// SIGTERM, not a new connection that failed.
    Drained,
    /// Refused, reset or unanswered before or during the upgrade, or a broken relay.
    Failed(String),
}

/// One WebSocket session to `addr` with the token `desk`: upgrade, echo, close.
async fn session(addr: SocketAddr, n: usize) -> Outcome {
    let url = format!("ws://{addr}/?token=desk");
    let mut ws = match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url)).await {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(err)) => return Outcome::Failed(format!("session {n}: upgrade: {err}")),
        Err(_) => return Outcome::Failed(format!("session {n}: upgrade timed out")),
    };
    let payload = format!("hello {n}").into_bytes();
    let echoed = tokio::time::timeout(WAIT, async {
        ws.send(Message::Binary(payload.clone().into())).await?;
        let mut got = Vec::new();
        while got.len() < payload.len() {
            match ws.next().await {
                Some(Ok(Message::Binary(data))) => got.extend_from_slice(&data),
                Some(Ok(Message::Close(Some(close)))) if close.code == CloseCode::Away => {
                    return Ok(None)
                }
                Some(Ok(other)) => return Ok(Some(format!("unexpected {other:?}"))),
                Some(Err(err)) => return Err(err),
                None => return Ok(Some("end of stream before the echo".into())),
            }
        }
        Ok((got != payload).then(|| format!("echo {got:?}")))
    })
    .await;
    match echoed {
        Ok(Ok(None)) => {}
        Ok(Ok(Some(why))) => return Outcome::Failed(format!("session {n}: {why}")),
        Ok(Err(err)) => return Outcome::Failed(format!("session {n}: relay: {err}")),
        Err(_) => return Outcome::Failed(format!("session {n}: echo timed out")),
    }
    let closed = tokio::time::timeout(WAIT, async {
        // The server closing first (a drain's 1001, after the echo) makes our close fail with
        // SendAfterClosing: that session was open at the SIGTERM.
        if let Err(Error::Protocol(ProtocolError::SendAfterClosing)) = ws.close(None).await {
            return Ok(Some(CloseCode::Away));
        }
        let mut code = None;
        while let Some(message) = ws.next().await {
            if let Message::Close(close) = message? {
                code = close.map(|c| c.code);
            }
        }
        Ok::<_, Error>(code)
    })
    .await;
    match closed {
        Ok(Ok(Some(CloseCode::Normal))) => Outcome::Served,
        Ok(Ok(Some(CloseCode::Away))) => Outcome::Drained,
        other => Outcome::Failed(format!("session {n}: close: {other:?}")),
    }
}

/// Clients opening sessions one after another until told to stop.
struct ClientLoop {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    drained: Arc<AtomicUsize>,
    failed: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ClientLoop {
    fn start(addr: SocketAddr, clients: usize) -> ClientLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let drained = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let next = Arc::new(AtomicUsize::new(0));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, served, drained, failed, next) = (
                    stop.clone(),
                    served.clone(),
                    drained.clone(),
                    failed.clone(),
                    next.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match session(addr, next.fetch_add(1, Ordering::Relaxed)).await {
                            Outcome::Served => served.fetch_add(1, Ordering::Relaxed),
                            Outcome::Drained => drained.fetch_add(1, Ordering::Relaxed),
                            Outcome::Failed(why) => {
                                failed.lock().unwrap().push(why);
                                0
                            }
                        };
                    }
                })
            })
            .collect();
        ClientLoop {
            stop,
            served,
            drained,
            failed,
            tasks,
        }
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::Relaxed)
    }

    /// Stops the clients; (served, drained, failures).
    async fn finish(self) -> (usize, usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            bounded("a client to finish its session", task)
                .await
                .unwrap();
        }
        let failed = self.failed.lock().unwrap().clone();
        (
            self.served.load(Ordering::Relaxed),
            self.drained.load(Ordering::Relaxed),
            failed,
        )
    }
}

async fn accepted(metrics: SocketAddr) -> f64 {
    value(&scrape(metrics).await, ACCEPTED)
}

/// Waits (bounded) until `clients` served `more` sessions past `from`.
async fn served_past(clients: &ClientLoop, from: usize, more: usize, what: &str) {
    bounded(what, async {
        while clients.served() < from + more {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_behind_haproxy_share_redis_tokens_and_a_sigterm_fails_no_new_connection() {
    let redis = Redis::start(None);
    let echo = echo_server().await;
    // The token is added once, in the store both instances read.
    redis.set(0, "desk", &echo.to_string());
    let source = format!("127.0.0.1:{}", redis.port);
    let args = [
        "--token-plugin=TokenRedis",
        &format!("--token-source={source}"),
        "--drain-grace=2",
    ];
    let (mut a, a_metrics) = start(&args).await;
    let (b, b_metrics) = start(&args).await;
    let balancer =
        HaProxy::balance(&[(a.addr, a_metrics.port()), (b.addr, b_metrics.port())]).await;

    // Round robin: both instances serve the token, and only HAProxy's clients reached them
    // (its health checks go to the metrics ports).
    const N: usize = 20;
    for n in 0..N {
        let outcome = session(balancer.addr, n).await;
        assert!(matches!(outcome, Outcome::Served), "{outcome:?}");
    }
    let (on_a, on_b) = (accepted(a_metrics).await, accepted(b_metrics).await);
    assert_eq!(on_a + on_b, N as f64, "a {on_a}, b {on_b}");
    assert!(on_a >= 5.0 && on_b >= 5.0, "a {on_a}, b {on_b}");

    // SIGTERM to A while four clients keep opening sessions through the balancer.
    let clients = ClientLoop::start(balancer.addr, 4);
    served_past(&clients, 0, 20, "sessions before the SIGTERM").await;
    a.signal(rustix::process::Signal::TERM);
    a.wait_for("--drain-grace").await;
    // During the grace A says 503 but still serves whoever reaches it.
    let (status, _) = get(a_metrics, "GET", "/healthz").await;
    assert!(status.starts_with("HTTP/1.1 503"), "{status}");
    let outcome = session(a.addr, 0).await;
    assert!(matches!(outcome, Outcome::Served), "{outcome:?}");
    let (status, took) = a.exit_within(WAIT).await;
    assert!(status.success(), "{status} after {took:?}");
    // B alone serves what comes after.
    let b_before = accepted(b_metrics).await;
    served_past(&clients, clients.served(), 20, "sessions after A exited").await;
    let (served, drained, failed) = clients.finish().await;
    assert!(failed.is_empty(), "{} failed: {failed:#?}", failed.len());
    assert!(accepted(b_metrics).await >= b_before + 20.0);
    eprintln!("{served} sessions served, {drained} drained (1001) across the SIGTERM");
}
