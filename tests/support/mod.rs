//! Shared test helpers: the real server on 127.0.0.1 port 0, real TCP targets, a raw WebSocket
//! client that can send any frame (including broken ones), and certificates made on the spot.
#![allow(dead_code)]

mod binary;
pub mod haproxy;
pub mod metrics;
pub mod procs;
pub mod redis;
pub mod systemd;
#[allow(unused_imports)]
pub use binary::LoggedBinary;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use websockify::Server;
use websockify::{Listen, Settings, TargetSpec};

/// The `websockify` binary cargo built for the integration tests. `CARGO_BIN_EXE_websockify`
/// exists only in the package's own test files, and this crate is compiled once for all of
/// them: the binary sits in the test executable's profile directory (`target/debug/deps/X` →
/// `target/debug/websockify`).
pub fn websockify_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable lies in <profile>/deps");
    let bin = dir.join("websockify");
    assert!(bin.is_file(), "{} was not built", bin.display());
    bin
}

/// Every wait in the tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(10);

/// Runs `fut`, failing the test if it takes longer than `WAIT`.
pub async fn bounded<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {WAIT:?}: {what}"),
    }
}

/// A proxy server running in this test's runtime.
pub struct Proxy {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Stops the server (as SIGTERM would) and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        bounded("server shutdown", &mut self.task).await.unwrap();
    }

    /// Waits for the server to stop by itself (--run-once, --timeout, ...).
    pub async fn finished(mut self) {
        bounded("server exit", &mut self.task).await.unwrap();
    }

    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }
}

/// Settings for a proxy on 127.0.0.1 (any port) to `target`.
pub fn settings_to(target: SocketAddr) -> Settings {
    Settings::new(
        Listen::Tcp {
            host: "127.0.0.1".into(),
            port: 0,
        },
        TargetSpec::Tcp {
            host: target.ip().to_string(),
            port: target.port(),
        },
    )
}

/// A stop request for `Server::run` from a oneshot: the first call waits for it, later calls
/// (a second stop, during the drain) never complete.
pub fn once(
    rx: oneshot::Receiver<()>,
) -> impl FnMut() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    let mut rx = Some(rx);
    move || match rx.take() {
        Some(rx) => Box::pin(async move {
            let _ = rx.await;
        }),
        None => Box::pin(std::future::pending()),
    }
}

/// Starts the real server with `settings` on 127.0.0.1, port 0.
pub async fn start_proxy(mut settings: Settings) -> Proxy {
    // `stop` drains: most tests stop with a client still connected that never answers the
    // 1001, which would hold every such test for the whole default drain (5 s). The drain
    // itself is tested on the real binary (tests/signals.rs).
    if settings.drain_timeout == websockify::DEFAULT_DRAIN_TIMEOUT {
        settings.drain_timeout = Duration::from_millis(100);
    }
    let server = Server::new(settings).expect("server settings");
    let listener = websockify::bind_addr("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = websockify::TcpListener::new(listener).unwrap();
    let addr = listener.socket_addr();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(server.run(listener, once(rx), std::future::pending));
    Proxy {
        addr,
        shutdown: Some(tx),
        task,
    }
}

/// A TCP server on 127.0.0.1 that runs `handler` for each connection.
pub async fn tcp_server<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handler(stream));
        }
    });
    addr
}

/// A TCP echo server. With TCP_NODELAY, like a target a proxy is built for (VNC, telnet): with
/// Nagle, the last piece of each echo waits for the proxy's delayed ACK, 40 ms a message.
pub async fn echo_server() -> SocketAddr {
    tcp_server(|mut stream| async move {
        let _ = stream.set_nodelay(true);
        let (mut r, mut w) = stream.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    })
    .await
}

/// A TCP server that counts what it receives (and never answers).
pub async fn counting_sink() -> (SocketAddr, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let counter = count.clone();
    let addr = tcp_server(move |mut stream| {
        let counter = counter.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                counter.fetch_add(n as u64, Ordering::SeqCst);
            }
        }
    })
    .await;
    (addr, count)
}

/// A 127.0.0.1 address where nothing listens.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// A client frame, masked with `mask`.
pub fn masked_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A frame as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// (code, reason) of a close frame.
    pub fn close(&self) -> (u16, String) {
        assert_eq!(self.opcode, 0x8, "expected a close frame, got {self:?}");
        assert!(self.payload.len() >= 2, "close frame without a code");
        (
            u16::from_be_bytes([self.payload[0], self.payload[1]]),
            String::from_utf8(self.payload[2..].to_vec()).unwrap(),
        )
    }
}

/// A hand-driven WebSocket client over any stream (TCP or TLS).
pub struct RawClient<S> {
    pub stream: S,
    /// Bytes read past what was parsed.
    buf: Vec<u8>,
}

pub const KEY: &str = "DKURYVK9cRFul1vOZVA56Q==";
pub const ACCEPT: &str = "pczpYSQsvE1vBpTQYjFQPcuoj6M=";

/// An upgrade request for `path`, with `extra` header lines (each ending in \r\n).
pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

impl RawClient<TcpStream> {
    /// Connects and upgrades, offering `protocol` if given; panics unless the answer is 101.
    pub async fn connect(addr: SocketAddr, protocol: Option<&str>) -> (Self, String) {
        let stream = TcpStream::connect(addr).await.unwrap();
        Self::upgrade(stream, protocol).await
    }
}

impl<S: AsyncRead + Unpin> RawClient<S> {
    pub fn new(stream: S) -> Self {
        RawClient {
            stream,
            buf: Vec::new(),
        }
    }

    async fn fill(&mut self, n: usize) -> bool {
        while self.buf.len() < n {
            let mut chunk = vec![0u8; 64 * 1024];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
        true
    }

    /// Reads the next frame; None at end of stream.
    pub async fn read_frame(&mut self) -> Option<Frame> {
        bounded("a frame from the server", async {
            if !self.fill(2).await {
                return None;
            }
            let b0 = self.buf[0];
            let b1 = self.buf[1];
            assert_eq!(b1 & 0x80, 0, "server frames must not be masked");
            let (len, header) = match b1 & 0x7F {
                126 => {
                    assert!(self.fill(4).await);
                    (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                }
                127 => {
                    assert!(self.fill(10).await);
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&self.buf[2..10]);
                    (u64::from_be_bytes(b) as usize, 10)
                }
                n => (n as usize, 2),
            };
            assert!(self.fill(header + len).await, "stream ended inside a frame");
            let payload = self.buf[header..header + len].to_vec();
            self.buf.drain(..header + len);
            Some(Frame {
                fin: b0 & 0x80 != 0,
                opcode: b0 & 0x0F,
                payload,
            })
        })
        .await
    }

    /// Reads data frames until `n` payload bytes arrived; returns them.
    pub async fn read_data(&mut self, n: usize) -> Vec<u8> {
        let mut data = Vec::with_capacity(n);
        while data.len() < n {
            let frame = self
                .read_frame()
                .await
                .expect("stream ended while reading data");
            assert!(
                frame.opcode == 0x2 || frame.opcode == 0x1,
                "expected data, got {frame:?}"
            );
            data.extend_from_slice(&frame.payload);
        }
        data
    }

    /// Reads frames until a close frame; returns it (data frames before it are skipped).
    pub async fn read_close(&mut self) -> (u16, String) {
        loop {
            let frame = self
                .read_frame()
                .await
                .expect("stream ended without a close frame");
            if frame.opcode == 0x8 {
                return frame.close();
            }
        }
    }

    /// Asserts the server ends the stream (after any frames it still had).
    pub async fn expect_eof(&mut self) {
        bounded("end of stream", async {
            loop {
                let mut chunk = [0u8; 4096];
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawClient<S> {
    pub async fn upgrade(stream: S, protocol: Option<&str>) -> (Self, String) {
        let extra = protocol
            .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
            .unwrap_or_default();
        let mut client = RawClient::new(stream);
        let head = client
            .request(&upgrade_request("/websockify", &extra))
            .await;
        assert!(head.starts_with("HTTP/1.1 101"), "not upgraded: {head}");
        (client, head)
    }

    /// Sends raw request bytes and returns the response head (through the blank line).
    pub async fn request(&mut self, raw: &str) -> String {
        self.stream.write_all(raw.as_bytes()).await.unwrap();
        self.read_head().await
    }

    /// Reads a response head; leaves anything after it buffered.
    pub async fn read_head(&mut self) -> String {
        bounded("response head", async {
            loop {
                if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head: Vec<u8> = self.buf.drain(..end + 4).collect();
                    return String::from_utf8(head).unwrap();
                }
                let mut chunk = [0u8; 4096];
                let n = self.stream.read(&mut chunk).await.unwrap();
                assert!(
                    n > 0,
                    "connection closed before a response head; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    pub async fn send(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let frame = masked_frame(fin, opcode, payload, [0x37, 0xfa, 0x21, 0x3d]);
        self.send_raw(&frame).await;
    }
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "websockify-test-{}-{}-{}",
        std::process::id(),
        name,
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A self-signed certificate for "localhost" and 127.0.0.1: (certificate PEM, key PEM, DER).
pub fn self_signed() -> (String, String, Vec<u8>) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    (
        cert.cert.pem(),
        cert.key_pair.serialize_pem(),
        cert.cert.der().to_vec(),
    )
}

/// Reads until the server ends the connection (a reset counts: the server may close with our
/// bytes still unread); returns everything it sent before that. Bounded by `WAIT`.
pub async fn read_until_dropped<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    bounded("the server to drop the connection", async {
        let mut got = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
}

/// Sends `raw` on a new connection and returns everything the server sends before it ends
/// the connection.
pub async fn send_and_read_all(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw).await.unwrap();
    read_until_dropped(&mut stream).await
}

/// A target that says who it is (`name`), then echoes.
pub async fn named_target(name: &'static str) -> SocketAddr {
    tcp_server(move |mut stream| async move {
        let _ = stream.write_all(name.as_bytes()).await;
        let (mut r, mut w) = stream.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    })
    .await
}

/// Asserts an upgrade on `path` reaches the target that calls itself `name` (see
/// [`named_target`]) and relays both ways.
pub async fn assert_reaches(proxy: SocketAddr, path: &str, name: &str) {
    let mut client = RawClient::new(TcpStream::connect(proxy).await.unwrap());
    let head = client.request(&upgrade_request(path, "")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{path}: {head}");
    assert_eq!(
        client.read_data(name.len()).await,
        name.as_bytes(),
        "{path}"
    );
    client.send(true, 0x2, b"ping").await;
    assert_eq!(client.read_data(4).await, b"ping");
}

/// Asserts an upgrade on `path` is refused with `status` and `reason` (the body's one line),
/// and the connection ends.
pub async fn assert_upgrade_refused(proxy: SocketAddr, path: &str, status: u16, reason: &str) {
    let answer = send_and_read_all(proxy, upgrade_request(path, "").as_bytes()).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status} ")),
        "{path}: {answer}"
    );
    assert!(
        answer.ends_with(&format!(": {reason}\n")),
        "{path}: {answer}"
    );
}

/// The start-up error of `Server::new(settings)`; panics if it starts.
pub fn startup_error(settings: Settings) -> websockify::StartError {
    match Server::new(settings) {
        Ok(_) => panic!("the server should refuse to start"),
        Err(err) => err,
    }
}

/// A TCP connection to `addr` from the loopback address `from` (127.0.0.0/8 is all local on
/// Linux): a second client address without a second machine.
pub async fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// A target that hands the first `n` bytes it receives to the test, then echoes: what a
/// PROXY-reading target sees before the session's own bytes.
pub async fn capturing_target(
    n: usize,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let addr = tcp_server(move |mut stream| {
        let tx = tx.clone();
        async move {
            let mut first = vec![0u8; n];
            if stream.read_exact(&mut first).await.is_err() {
                return;
            }
            let _ = tx.send(first);
            let (mut r, mut w) = stream.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        }
    })
    .await;
    (addr, rx)
}
