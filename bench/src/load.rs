//! `wsbench load`: N connections through a WebSocket proxy (`--url`) or a plain TCP relay
//! (`--tcp`), in one of five modes. Byte counters are sampled after a warmup and again after
//! the measured window, so connection set-up and buffer filling never count; every
//! connection task is aborted at the end, so the run length is bounded whatever the peer does.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::timeout;

use crate::conn::{Conn, Tls};
use crate::stats::{Histogram, Json};
use crate::ws::{self, Read, Receiver, Rng, Sender};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Pipeline messages to an echo target; reports echoed MB/s and round-trip times.
    Echo,
    /// Send continuously to a sink target; reports client→target MB/s.
    Upload,
    /// Receive from a source target; reports target→client MB/s.
    Download,
    /// Open N connections, hold them for --duration, then check each still echoes.
    Idle,
    /// Each connection loops connect + handshake + one echo + close; reports handshakes/s.
    Handshake,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Upload => "upload",
            Mode::Download => "download",
            Mode::Idle => "idle",
            Mode::Handshake => "handshake",
        }
    }
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// WebSocket proxy to load, e.g. ws://127.0.0.1:8080/ or wss://127.0.0.1:8443/ (any
    /// certificate accepted: the servers under test use self-signed ones)
    #[arg(long, required_unless_present = "tcp", conflicts_with = "tcp")]
    pub url: Option<String>,
    /// Plain TCP relay (or server) to load instead, e.g. 127.0.0.1:9000
    #[arg(long)]
    pub tcp: Option<String>,
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    pub mode: Mode,
    /// Number of connections.
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// Message (frame payload) size in bytes.
    #[arg(long, default_value_t = 65536)]
    pub size: usize,
    /// Messages kept in flight per connection (echo mode).
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Measured window, seconds.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Unmeasured time after starting the connections, seconds.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Bound on connect + handshake and on each verification round trip, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Sec-WebSocket-Protocol to request; empty for none.
    #[arg(long, default_value = "binary")]
    pub protocol: String,
    /// Verify echoed bytes against what was sent (echo mode; costs a memcmp per byte).
    #[arg(long)]
    pub check: bool,
    /// Connections opened at once (idle mode).
    #[arg(long, default_value_t = 64)]
    pub open_concurrency: usize,
    /// Free text copied into the JSON line (e.g. which proxy this was).
    #[arg(long)]
    pub label: Option<String>,
    /// Fixed-work run (upload and download): each connection moves this many payload bytes
    /// (split evenly), closes cleanly and waits for the proxy to close; no warmup, the whole
    /// run is measured and --duration only bounds it. For CPU-per-byte and instruction counts.
    #[arg(long)]
    pub bytes: Option<u64>,
    /// Fixed-work run (handshake mode): this many sessions in all, split evenly between the
    /// connections; the whole run is measured and --duration only bounds it. For instruction
    /// counts per session.
    #[arg(long)]
    pub sessions: Option<u64>,
    /// wss://: resume TLS sessions (one session store for all connections, as one browser);
    /// without it every connection makes a full handshake.
    #[arg(long)]
    pub tls_resume: bool,
    /// Echo mode, latency under load: connection 0 is a probe that sends 64 B messages one at
    /// a time, on a thread of its own (so the load generator's busy thread does not delay
    /// it), and the round-trip times reported are the probe's alone; the other connections
    /// stream --size messages as fast as --pipeline lets them.
    #[arg(long)]
    pub probe: bool,
}

struct Target {
    addr: SocketAddr,
    /// Host header and path, in WebSocket mode.
    ws: Option<(String, String)>,
    /// TLS to speak first, for wss://.
    tls: Option<Tls>,
    shown: String,
}

struct Cfg {
    mode: Mode,
    /// Per-connection byte budget (`--bytes`), if any.
    budget: Option<u64>,
    /// Per-connection session budget (`--sessions`), if any.
    sessions: Option<u64>,
    size: usize,
    pipeline: usize,
    timeout: Duration,
    protocol: Option<String>,
    check: bool,
    /// Record round-trip times (echo mode): false for the bulk connections beside a probe.
    rtt: bool,
    /// This is the probe connection's configuration (`--probe`).
    probe: bool,
    /// Byte `j` of every message is `j % 251`: cheap to verify at any stream offset.
    payload: Vec<u8>,
}

#[derive(Default)]
struct Shared {
    tx: AtomicU64,
    rx: AtomicU64,
    msgs: AtomicU64,
    errors: AtomicU64,
    corrupt: AtomicU64,
    connected: AtomicU64,
    /// wss:// sessions whose TLS handshake resumed a session (`--mode handshake`): with
    /// `--tls-resume`, the rest paid a full handshake (no ticket was left in the store).
    resumed: AtomicU64,
    alive: AtomicU64,
    /// Round trips the probe completed (`--probe`), warmup included.
    probe_msgs: AtomicU64,
    measuring: AtomicBool,
    first_error: Mutex<Option<String>>,
    hist: Histogram,
}

impl Shared {
    fn fail(&self, e: &io::Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(e.to_string());
        }
    }

    fn snapshot(&self) -> [u64; 3] {
        [
            self.tx.load(Ordering::Relaxed),
            self.rx.load(Ordering::Relaxed),
            self.msgs.load(Ordering::Relaxed),
        ]
    }
}

/// Resolves `--url` / `--tcp`. Only loopback targets are accepted: this tool is a load
/// generator and must not be pointed at machines by accident.
async fn resolve(args: &LoadArgs) -> Result<Target, String> {
    let (hostport, ws, shown, secure) = if let Some(url) = &args.url {
        let (rest, secure) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
            (Some(rest), _) => (rest, false),
            (_, Some(rest)) => (rest, true),
            _ => {
                return Err(format!(
                    "--url must start with ws:// or wss:// (got {url:?})"
                ))
            }
        };
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        (
            hostport.to_string(),
            Some((hostport.to_string(), path.to_string())),
            url.clone(),
            secure,
        )
    } else if let Some(t) = &args.tcp {
        (t.clone(), None, format!("tcp://{t}"), false)
    } else {
        return Err("one of --url or --tcp is required".into());
    };
    let addr = tokio::net::lookup_host(&hostport)
        .await
        .map_err(|e| format!("resolving {hostport}: {e}"))?
        .next()
        .ok_or_else(|| format!("{hostport} resolves to nothing"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("refusing non-loopback target {addr}"));
    }
    let tls = if secure {
        // The name without the port (and an IPv6 literal without its brackets).
        let host = match hostport.rsplit_once(':') {
            Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
            None => hostport.as_str(),
        };
        Some(Tls::new(host, args.tls_resume)?)
    } else {
        None
    };
    Ok(Target {
        addr,
        ws,
        tls,
        shown,
    })
}

/// TCP connect (+ WebSocket handshake), bounded by `--timeout`. Returns the stream and any
/// bytes that arrived behind the handshake response.
async fn open(t: &Target, cfg: &Cfg, rng: &mut Rng) -> io::Result<(Conn, Vec<u8>)> {
    let fut = async {
        let tcp = TcpStream::connect(t.addr).await?;
        tcp.set_nodelay(true)?;
        let mut s = Conn::open(tcp, t.tls.as_ref()).await?;
        let left = match &t.ws {
            Some((host, path)) => {
                ws::handshake(&mut s, host, path, cfg.protocol.as_deref(), rng).await?
            }
            None => Vec::new(),
        };
        Ok((s, left))
    };
    timeout(cfg.timeout, fut)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect/handshake timed out"))?
}

/// Does `data`, found at `offset` of the echoed stream, match what was sent?
fn matches(payload: &[u8], offset: u64, mut data: &[u8]) -> bool {
    let mut pos = (offset % payload.len() as u64) as usize;
    while !data.is_empty() {
        let take = (payload.len() - pos).min(data.len());
        if data[..take] != payload[pos..pos + take] {
            return false;
        }
        data = &data[take..];
        pos = 0;
    }
    true
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed by peer")
}

/// Echo mode: a writer task keeps `pipeline` messages in flight (a semaphore of permits);
/// the reader counts echoed bytes and, as the byte count crosses each message boundary,
/// completes the oldest send. Bytes, not frames: the echo target may re-chunk.
async fn echo_conn(idx: u64, t: Arc<Target>, cfg: Arc<Cfg>, sh: Arc<Shared>) -> io::Result<()> {
    let mut rng = Rng::seeded(idx);
    let (s, left) = open(&t, &cfg, &mut rng).await?;
    sh.connected.fetch_add(1, Ordering::Relaxed);
    let (mut rd, mut wr) = s.into_split();
    let sem = Arc::new(Semaphore::new(cfg.pipeline));
    let sent_at = Arc::new(Mutex::new(VecDeque::with_capacity(cfg.pipeline)));
    let mut writer = {
        let (sem, sent_at, cfg, sh) = (sem.clone(), sent_at.clone(), cfg.clone(), sh.clone());
        let ws = t.ws.is_some();
        tokio::spawn(async move {
            let mut tx = Sender::new(&cfg.payload, ws, rng);
            loop {
                match sem.acquire().await {
                    Ok(p) => p.forget(),
                    Err(_) => return Ok::<(), io::Error>(()),
                }
                sent_at
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_back(Instant::now());
                wr.write_all(tx.next_frame()).await?;
                sh.tx.fetch_add(cfg.size as u64, Ordering::Relaxed);
            }
        })
    };
    let reader = async {
        let mut rx = Receiver::new(t.ws.is_some(), left);
        let size = cfg.size as u64;
        let (mut total, mut done) = (0u64, 0u64);
        loop {
            let mut off = total;
            let mut bad = false;
            let got = rx
                .read_some(&mut rd, |d| {
                    if cfg.check && !matches(&cfg.payload, off, d) {
                        bad = true;
                    }
                    off += d.len() as u64;
                })
                .await?;
            let Read::Data(n) = got else {
                return Err(eof());
            };
            if bad {
                sh.corrupt.fetch_add(1, Ordering::Relaxed);
                return Err(io::Error::other("echoed bytes differ from those sent"));
            }
            total += n as u64;
            sh.rx.fetch_add(n as u64, Ordering::Relaxed);
            let completed = total / size;
            if completed > done {
                let measuring = sh.measuring.load(Ordering::Relaxed);
                let now = Instant::now();
                let mut q = sent_at.lock().unwrap_or_else(|p| p.into_inner());
                for _ in done..completed {
                    match q.pop_front() {
                        Some(at) if measuring && cfg.rtt => sh.hist.record(now - at),
                        Some(_) => {}
                        None => return Err(io::Error::other("echoed more bytes than sent")),
                    }
                }
                drop(q);
                sh.msgs.fetch_add(completed - done, Ordering::Relaxed);
                if cfg.probe {
                    sh.probe_msgs.fetch_add(completed - done, Ordering::Relaxed);
                }
                sem.add_permits((completed - done) as usize);
                done = completed;
            }
        }
    };
    let result = tokio::select! {
        r = reader => r,
        w = &mut writer => match w {
            Ok(r) => r,
            Err(e) => Err(io::Error::other(e)),
        },
    };
    writer.abort();
    result
}

/// Upload mode: write frames back to back; drain (and watch for EOF) on the same task.
async fn upload_conn(idx: u64, t: Arc<Target>, cfg: Arc<Cfg>, sh: Arc<Shared>) -> io::Result<()> {
    let mut rng = Rng::seeded(idx);
    let (s, left) = open(&t, &cfg, &mut rng).await?;
    sh.connected.fetch_add(1, Ordering::Relaxed);
    let (mut rd, mut wr) = s.into_split();
    let closing = AtomicBool::new(false);
    let write = async {
        let mut tx = Sender::new(&cfg.payload, t.ws.is_some(), rng);
        let mut sent = 0u64;
        loop {
            if let Some(budget) = cfg.budget {
                if sent >= budget {
                    closing.store(true, Ordering::Relaxed);
                    // Done: close cleanly; the drain below sees the proxy's close / EOF.
                    if t.ws.is_some() {
                        wr.write_all(&tx.close_frame()).await?;
                    }
                    wr.shutdown().await?;
                    return std::future::pending().await;
                }
            }
            wr.write_all(tx.next_frame()).await?;
            sent += cfg.size as u64;
            sh.tx.fetch_add(cfg.size as u64, Ordering::Relaxed);
        }
    };
    let drain = async {
        let mut rx = Receiver::with_capacity(t.ws.is_some(), left, 16 * 1024);
        loop {
            match rx.read_some(&mut rd, |_| {}).await {
                Ok(Read::Eof) if closing.load(Ordering::Relaxed) => return Ok(()),
                Ok(Read::Eof) => return Err::<(), _>(eof()),
                Ok(Read::Data(_)) => {}
                // The proxy answers our close frame once it has written everything to the
                // target: the orderly end of a fixed-work run.
                Err(_) if closing.load(Ordering::Relaxed) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    };
    tokio::select! {
        r = write => r,
        r = drain => r,
    }
}

/// Download mode: count payload bytes from a source target.
async fn download_conn(idx: u64, t: Arc<Target>, cfg: Arc<Cfg>, sh: Arc<Shared>) -> io::Result<()> {
    let mut rng = Rng::seeded(idx);
    let (mut s, left) = open(&t, &cfg, &mut rng).await?;
    sh.connected.fetch_add(1, Ordering::Relaxed);
    let mut rx = Receiver::new(t.ws.is_some(), left);
    let mut got = 0u64;
    loop {
        if let Some(budget) = cfg.budget {
            if got >= budget {
                break;
            }
        }
        match rx.read_some(&mut s, |_| {}).await? {
            Read::Data(n) => {
                got += n as u64;
                sh.rx.fetch_add(n as u64, Ordering::Relaxed)
            }
            Read::Eof => return Err(eof()),
        };
    }
    // Budget reached: close cleanly and wait (bounded) for the proxy to let go.
    let mut tx = Sender::new(&cfg.payload, t.ws.is_some(), rng);
    let _ = timeout(cfg.timeout, async {
        if t.ws.is_some() {
            s.write_all(&tx.close_frame()).await?;
        }
        s.shutdown().await?;
        let mut sink = vec![0u8; 64 * 1024];
        while s.read(&mut sink).await? > 0 {}
        Ok::<(), io::Error>(())
    })
    .await;
    Ok(())
}

/// Sends one message on an open connection and waits (bounded) for all of it to come back.
async fn round_trip(
    s: &mut Conn,
    left: Vec<u8>,
    ws: bool,
    cfg: &Cfg,
    rng: Rng,
) -> io::Result<Sender> {
    let mut tx = Sender::new(&cfg.payload, ws, rng);
    let fut = async {
        s.write_all(tx.next_frame()).await?;
        let mut rx = Receiver::with_capacity(ws, left, cfg.size.clamp(4096, 64 * 1024));
        let mut got = 0;
        while got < cfg.size {
            match rx.read_some(s, |_| {}).await? {
                Read::Data(n) => got += n,
                Read::Eof => return Err(eof()),
            }
        }
        Ok(())
    };
    timeout(cfg.timeout, fut)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "echo round trip timed out"))??;
    Ok(tx)
}

/// Handshake mode: open, one echo round trip (so the proxy has really reached the target),
/// close; the latency recorded is connect → echo received.
async fn handshake_conn(
    idx: u64,
    t: Arc<Target>,
    cfg: Arc<Cfg>,
    sh: Arc<Shared>,
) -> io::Result<()> {
    let mut rng = Rng::seeded(idx);
    let mut made = 0u64;
    loop {
        if cfg.sessions.is_some_and(|n| made >= n) {
            return Ok(());
        }
        made += 1;
        let start = Instant::now();
        let (mut s, left) = open(&t, &cfg, &mut rng).await?;
        sh.connected.fetch_add(1, Ordering::Relaxed);
        if s.resumed() {
            sh.resumed.fetch_add(1, Ordering::Relaxed);
        }
        let mut tx = round_trip(&mut s, left, t.ws.is_some(), &cfg, rng.clone()).await?;
        rng.next_u64();
        if sh.measuring.load(Ordering::Relaxed) {
            sh.hist.record(start.elapsed());
        }
        sh.msgs.fetch_add(1, Ordering::Relaxed);
        // A clean close (close frame, FIN, then wait for the peer's FIN) so the proxy sees
        // an orderly end, not a reset; what the peer sends meanwhile is discarded.
        let _ = timeout(cfg.timeout, async {
            if t.ws.is_some() {
                s.write_all(&tx.close_frame()).await?;
            }
            s.shutdown().await?;
            let mut sink = [0u8; 4096];
            while s.read(&mut sink).await? > 0 {}
            Ok::<(), io::Error>(())
        })
        .await;
    }
}

/// Idle mode, one connection: open (latency recorded), wait for the go signal, then prove
/// the connection still works with one echo round trip.
async fn idle_conn(
    idx: u64,
    t: Arc<Target>,
    cfg: Arc<Cfg>,
    sh: Arc<Shared>,
    gate: Arc<Semaphore>,
    mut verify: watch::Receiver<bool>,
) -> io::Result<()> {
    let mut rng = Rng::seeded(idx);
    let (mut s, left) = {
        let _permit = gate.acquire().await.map_err(io::Error::other)?;
        let start = Instant::now();
        let opened = open(&t, &cfg, &mut rng).await?;
        sh.hist.record(start.elapsed());
        opened
    };
    sh.connected.fetch_add(1, Ordering::Relaxed);
    // An error here means the sender is gone: the run is over, nothing to verify.
    if verify.wait_for(|&go| go).await.is_err() {
        return Ok(());
    }
    round_trip(&mut s, left, t.ws.is_some(), &cfg, rng).await?;
    sh.alive.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

fn secs(v: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v).map_err(|_| format!("bad {what}: {v}"))
}

/// Waits for every task, at most `bound`; aborts the stragglers.
async fn reap(set: &mut JoinSet<()>, bound: Duration) {
    let _ = timeout(bound, async { while set.join_next().await.is_some() {} }).await;
    set.abort_all();
    let _ = timeout(Duration::from_secs(1), async {
        while set.join_next().await.is_some() {}
    })
    .await;
}

/// The probe's message size (latency under load): a keystroke or a small screen update.
const PROBE_SIZE: usize = 64;

/// A current-thread runtime on a thread of its own, for the probe connection. Dropping it
/// stops the runtime (its tasks are aborted by `reap` first) and joins the thread.
struct ProbeThread {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProbeThread {
    fn start() -> io::Result<ProbeThread> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("probe".into())
            .spawn(move || {
                let _ = rt.block_on(stopped);
            })?;
        Ok(ProbeThread {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for ProbeThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs the load and prints the report. Returns whether the run was clean (no errors, no
/// corruption, at least one connection).
pub async fn run(args: LoadArgs) -> Result<bool, String> {
    measure(args).await.map(|(clean, _)| clean)
}

/// [`run`], also returning the report's JSON line.
async fn measure(args: LoadArgs) -> Result<(bool, String), String> {
    if args.conns == 0 || args.size == 0 || args.pipeline == 0 || args.open_concurrency == 0 {
        return Err("--conns, --size, --pipeline and --open-concurrency must be > 0".into());
    }
    let warmup = secs(args.warmup, "--warmup")?;
    let duration = secs(args.duration, "--duration")?;
    let t = Arc::new(resolve(&args).await?);
    if args.bytes.is_some() && !matches!(args.mode, Mode::Upload | Mode::Download) {
        return Err("--bytes works with --mode upload or download".into());
    }
    if args.sessions.is_some() && args.mode != Mode::Handshake {
        return Err("--sessions works with --mode handshake".into());
    }
    if args.probe && (args.mode != Mode::Echo || args.conns < 2) {
        return Err("--probe works with --mode echo and --conns 2 or more".into());
    }
    let make_cfg = |size: usize, pipeline: usize, probe: bool| -> Result<Cfg, String> {
        Ok(Cfg {
            mode: args.mode,
            budget: args.bytes.map(|b| b.div_ceil(args.conns as u64)),
            sessions: args.sessions.map(|n| n.div_ceil(args.conns as u64)),
            size,
            pipeline,
            timeout: secs(args.timeout, "--timeout")?,
            protocol: (!args.protocol.is_empty()).then(|| args.protocol.clone()),
            check: args.check,
            rtt: probe || !args.probe,
            probe,
            payload: (0..size).map(|i| (i % 251) as u8).collect(),
        })
    };
    let cfg = Arc::new(make_cfg(args.size, args.pipeline, false)?);
    let probe = if args.probe {
        Some((
            Arc::new(make_cfg(PROBE_SIZE, 1, true)?),
            ProbeThread::start().map_err(|e| format!("probe thread: {e}"))?,
        ))
    } else {
        None
    };
    let sh = Arc::new(Shared::default());
    let mut set = JoinSet::new();

    let (elapsed, delta, open_secs) = if cfg.mode == Mode::Idle {
        let gate = Arc::new(Semaphore::new(args.open_concurrency));
        let (go, verify) = watch::channel(false);
        let start = Instant::now();
        for i in 0..args.conns {
            let (t, cfg, sh, gate, verify) = (
                t.clone(),
                cfg.clone(),
                sh.clone(),
                gate.clone(),
                verify.clone(),
            );
            set.spawn(async move {
                if let Err(e) = idle_conn(i as u64, t, cfg.clone(), sh.clone(), gate, verify).await
                {
                    sh.fail(&e);
                }
            });
        }
        // Each open is bounded by --timeout and at most open_concurrency run at once.
        let waves = args.conns.div_ceil(args.open_concurrency) as u32;
        let open_bound = cfg.timeout * waves + Duration::from_secs(1);
        let settled = || {
            sh.connected.load(Ordering::Relaxed) + sh.errors.load(Ordering::Relaxed)
                >= args.conns as u64
        };
        while !settled() && start.elapsed() < open_bound {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let open_secs = start.elapsed().as_secs_f64();
        tokio::time::sleep(duration).await;
        let _ = go.send(true);
        reap(&mut set, cfg.timeout + Duration::from_secs(1)).await;
        (duration, [0, 0, 0], Some(open_secs))
    } else {
        for i in 0..args.conns {
            let (t, cfg, sh) = (t.clone(), cfg.clone(), sh.clone());
            if let (0, Some((probe_cfg, probe_thread))) = (i, &probe) {
                let probe_cfg = probe_cfg.clone();
                set.spawn_on(
                    async move {
                        if let Err(e) = echo_conn(0, t, probe_cfg, sh.clone()).await {
                            sh.fail(&e);
                        }
                    },
                    &probe_thread.handle,
                );
                continue;
            }
            set.spawn(async move {
                let i = i as u64;
                let r = match cfg.mode {
                    Mode::Echo => echo_conn(i, t, cfg, sh.clone()).await,
                    Mode::Upload => upload_conn(i, t, cfg, sh.clone()).await,
                    Mode::Download => download_conn(i, t, cfg, sh.clone()).await,
                    Mode::Handshake => handshake_conn(i, t, cfg, sh.clone()).await,
                    Mode::Idle => Ok(()),
                };
                if let Err(e) = r {
                    sh.fail(&e);
                }
            });
        }
        if cfg.budget.is_some() || cfg.sessions.is_some() {
            // Fixed work: everything counts, --duration only bounds the run.
            let t0 = Instant::now();
            reap(&mut set, duration).await;
            let elapsed = t0.elapsed();
            let s1 = sh.snapshot();
            if elapsed >= duration {
                sh.fail(&io::Error::new(
                    io::ErrorKind::TimedOut,
                    "fixed-work run not done within --duration",
                ));
            }
            return report(&args, &t, &cfg, &sh, elapsed, s1, None);
        }
        tokio::time::sleep(warmup).await;
        let s0 = sh.snapshot();
        let t0 = Instant::now();
        sh.measuring.store(true, Ordering::Relaxed);
        tokio::time::sleep(duration).await;
        let s1 = sh.snapshot();
        let elapsed = t0.elapsed();
        sh.measuring.store(false, Ordering::Relaxed);
        // Counters are read: stop everyone now, whatever they are blocked on.
        reap(&mut set, Duration::ZERO).await;
        (elapsed, [s1[0] - s0[0], s1[1] - s0[1], s1[2] - s0[2]], None)
    };

    report(&args, &t, &cfg, &sh, elapsed, delta, open_secs)
}

fn report(
    args: &LoadArgs,
    t: &Target,
    cfg: &Cfg,
    sh: &Shared,
    elapsed: Duration,
    [tx, rx, msgs]: [u64; 3],
    open_secs: Option<f64>,
) -> Result<(bool, String), String> {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let (tx_mbs, rx_mbs) = (tx as f64 / secs / 1e6, rx as f64 / secs / 1e6);
    let primary = match cfg.mode {
        Mode::Echo | Mode::Download => Some(rx_mbs),
        Mode::Upload => Some(tx_mbs),
        Mode::Idle | Mode::Handshake => None,
    };
    let us = |q: f64| sh.hist.quantile(q).map(|ns| ns as f64 / 1e3);
    let (p50, p99, max) = (us(0.5), us(0.99), us(1.0));
    let errors = sh.errors.load(Ordering::Relaxed);
    let corrupt = sh.corrupt.load(Ordering::Relaxed);
    let connected = sh.connected.load(Ordering::Relaxed);
    let alive = sh.alive.load(Ordering::Relaxed);
    let first_error = sh
        .first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let line = Json::default()
        .str("mode", cfg.mode.name())
        .opt_str("label", args.label.as_deref())
        .str("target", &t.shown)
        .int("conns", args.conns as u64)
        .int("connected", connected)
        .int("resumed", sh.resumed.load(Ordering::Relaxed))
        .int("size", cfg.size as u64)
        .int("pipeline", cfg.pipeline as u64)
        .num("warmup_s", args.warmup)
        .num("duration_s", secs)
        .opt_num("mb_per_s", primary)
        .num("tx_mb_per_s", tx_mbs)
        .num("rx_mb_per_s", rx_mbs)
        .int("tx_bytes", tx)
        .int("rx_bytes", rx)
        .int("msgs", msgs)
        .num("msgs_per_s", msgs as f64 / secs)
        .opt_num("rtt_p50_us", p50)
        .opt_num("rtt_p99_us", p99)
        .opt_num("rtt_max_us", max)
        .int("rtt_samples", sh.hist.count())
        .opt_num(
            "probe_msgs",
            args.probe
                .then(|| sh.probe_msgs.load(Ordering::Relaxed) as f64),
        )
        .opt_num("open_s", open_secs)
        .int("alive", alive)
        .int("errors", errors)
        .int("corrupt", corrupt)
        .opt_str("first_error", first_error.as_deref())
        .finish();
    println!("{line}");

    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    let what = match cfg.mode {
        Mode::Echo => format!(
            "{rx_mbs:.1} MB/s echoed (sent {tx_mbs:.1}), {:.0} msg/s",
            msgs as f64 / secs
        ),
        Mode::Upload => format!("{tx_mbs:.1} MB/s client→target"),
        Mode::Download => format!("{rx_mbs:.1} MB/s target→client"),
        Mode::Handshake => format!("{:.0} handshakes/s", msgs as f64 / secs),
        Mode::Idle => format!(
            "{connected}/{} opened in {:.2} s, {alive} alive after {secs:.1} s",
            args.conns,
            open_secs.unwrap_or(0.0)
        ),
    };
    eprintln!(
        "{} {} conns={} size={} pipeline={}: {what}; latency µs p50 {} p99 {} max {}; errors {errors}{}",
        cfg.mode.name(),
        t.shown,
        args.conns,
        cfg.size,
        cfg.pipeline,
        f(p50),
        f(p99),
        f(max),
        first_error.map_or(String::new(), |e| format!(" (first: {e})")),
    );
    Ok((errors == 0 && corrupt == 0 && connected > 0, line))
}

#[cfg(test)]
mod tests {
    use super::{matches, measure, LoadArgs, Mode};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A TCP echo target on a real loopback socket; returns its address.
    async fn echo_target() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut b = vec![0u8; 256 * 1024];
                    while let Ok(n @ 1..) = s.read(&mut b).await {
                        if s.write_all(&b[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn field(line: &str, key: &str) -> f64 {
        let at = line.find(&format!("\"{key}\":")).unwrap() + key.len() + 3;
        let end = line[at..].find([',', '}']).unwrap() + at;
        line[at..end].parse().unwrap()
    }

    /// With --probe the quantiles come from the probe's round trips alone: every recorded
    /// round trip is one the probe made, while the bulk connections echoed far more.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn probe_round_trips_are_the_only_ones_recorded() {
        let addr = echo_target().await;
        let args = LoadArgs {
            url: None,
            tcp: Some(addr.to_string()),
            mode: Mode::Echo,
            conns: 3,
            size: 256 * 1024,
            pipeline: 2,
            duration: 1.0,
            warmup: 0.0,
            timeout: 10.0,
            protocol: String::new(),
            check: true,
            open_concurrency: 64,
            label: None,
            bytes: None,
            sessions: None,
            tls_resume: false,
            probe: true,
        };
        let (clean, line) = measure(args).await.unwrap();
        assert!(clean, "{line}");
        let (samples, probe, msgs) = (
            field(&line, "rtt_samples"),
            field(&line, "probe_msgs"),
            field(&line, "msgs"),
        );
        assert!(samples > 0.0, "the probe recorded nothing: {line}");
        assert!(
            samples <= probe,
            "round trips recorded beyond the probe's: {line}"
        );
        assert!(msgs > probe, "the bulk connections echoed nothing: {line}");
    }

    #[test]
    fn matches_across_message_boundaries() {
        let p: Vec<u8> = (0..10).map(|i| (i % 251) as u8).collect();
        let stream: Vec<u8> = p.iter().chain(&p).chain(&p).copied().collect();
        for start in 0..stream.len() {
            for end in start..stream.len() {
                assert!(matches(&p, start as u64, &stream[start..end]));
            }
        }
        assert!(!matches(&p, 3, &[0, 1]));
    }
}
