//! wsbench: the benchmark tool of the websockify rewrite. It plays every role around the
//! proxy under test (client load generator, echo / sink / source targets, and a plain TCP
//! relay as the yardstick), so a run needs nothing but this binary and the proxy.

mod conn;
mod load;
mod plot;
mod servers;
mod stats;
mod ws;

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "wsbench", version, about)]
struct Cli {
    /// Tokio worker threads (1 = current-thread runtime). Default: 1, except tcp-relay,
    /// which uses tokio's default (one per core) like a real proxy would.
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// TCP echo server (the target of echo, idle and handshake loads).
    EchoServer(ServerArgs),
    /// TCP server that discards everything (the target of upload loads).
    SinkServer(ServerArgs),
    /// TCP server that sends a pattern forever (the target of download loads).
    SourceServer(ServerArgs),
    /// Plain TCP relay: the yardstick a WebSocket proxy is compared with.
    TcpRelay(RelayArgs),
    /// Generate load through a WebSocket proxy or TCP relay and report one JSON line.
    Load(load::LoadArgs),
    /// Draw the benchmark charts (PNG) from scripts/bench.sh's results table.
    Plot(plot::PlotArgs),
    /// Print a currently free loopback port.
    FreePort,
    /// Wait until ADDR accepts TCP connections (exit 1 after --timeout).
    WaitPort {
        addr: SocketAddr,
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
    },
}

#[derive(Args)]
struct ServerArgs {
    /// Address to listen on; port 0 picks one (printed as "listening ADDR").
    #[arg(long)]
    listen: SocketAddr,
    /// Per-connection buffer size in bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    buf: usize,
    /// Exit after this many seconds, so a forgotten server cannot linger.
    #[arg(long, default_value_t = 3600.0)]
    lifetime: f64,
}

#[derive(Args)]
struct RelayArgs {
    #[arg(long)]
    listen: SocketAddr,
    /// Where to relay to (must be loopback).
    #[arg(long)]
    target: String,
    /// Buffer size per direction in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    buf: usize,
    #[arg(long, default_value_t = 3600.0)]
    lifetime: f64,
}

fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if threads > 1 {
            b.worker_threads(threads);
        }
        b.enable_all().build()
    }
}

fn secs(v: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v).map_err(|_| format!("bad duration: {v}"))
}

/// Runs a server future until it fails or its lifetime ends.
fn serve<F>(threads: usize, lifetime: f64, fut: F) -> Result<bool, String>
where
    F: std::future::Future<Output = std::io::Result<()>>,
{
    let lifetime = secs(lifetime)?;
    let rt = runtime(threads).map_err(|e| e.to_string())?;
    rt.block_on(async {
        match tokio::time::timeout(lifetime, fut).await {
            Ok(r) => r.map(|()| true).map_err(|e| e.to_string()),
            Err(_) => Ok(true),
        }
    })
}

fn real_main(cli: Cli) -> Result<bool, String> {
    let threads = cli.threads.unwrap_or(1);
    match cli.cmd {
        Cmd::EchoServer(a) => serve(threads, a.lifetime, servers::echo_server(a.listen, a.buf)),
        Cmd::SinkServer(a) => serve(threads, a.lifetime, servers::sink_server(a.listen, a.buf)),
        Cmd::SourceServer(a) => serve(threads, a.lifetime, servers::source_server(a.listen, a.buf)),
        Cmd::TcpRelay(a) => {
            let target = a
                .target
                .to_socket_addrs()
                .map_err(|e| format!("resolving {}: {e}", a.target))?
                .next()
                .ok_or_else(|| format!("{} resolves to nothing", a.target))?;
            if !target.ip().is_loopback() {
                return Err(format!("refusing non-loopback target {target}"));
            }
            let fut = servers::tcp_relay(a.listen, target, a.buf, Duration::from_secs(10));
            serve(cli.threads.unwrap_or(0), a.lifetime, fut)
        }
        Cmd::Load(a) => {
            let rt = runtime(threads).map_err(|e| e.to_string())?;
            rt.block_on(load::run(a))
        }
        Cmd::Plot(a) => plot::run(a),
        Cmd::FreePort => {
            let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            println!("{}", l.local_addr().map_err(|e| e.to_string())?.port());
            Ok(true)
        }
        Cmd::WaitPort { addr, timeout } => {
            let deadline = Instant::now() + secs(timeout)?;
            loop {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Ok(true);
                }
                if Instant::now() >= deadline {
                    return Err(format!("{addr} not accepting after {timeout} s"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn main() -> ExitCode {
    match real_main(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("wsbench: error: {e}");
            ExitCode::from(2)
        }
    }
}
