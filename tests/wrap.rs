//! Wrapped programs (`websockify PORT -- PROGRAM ARGS`), driving the real binary with programs
//! we did not write: Python's http.server over IPv4 and IPv6 (always), a TigerVNC server when
//! one is installed. Then each `--wrap-mode`, reaping, SIGTERM on stop and `--unix-listen`.

use websockify_test_support as support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use support::procs::{self, free_port, has_ipv6, stat};
use support::*;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

/// A directory with a file whose content only this test knows, for http.server to serve.
fn site(name: &str) -> (std::path::PathBuf, String) {
    let dir = temp_dir(name);
    let marker = format!("served-by-python-{}-{name}", std::process::id());
    std::fs::write(dir.join("marker.txt"), &marker).unwrap();
    (dir, marker)
}

/// Upgrades on `stream`: Some(client) on 101, None on a refusal (the program is not ready).
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> Option<RawClient<S>> {
    let mut client = RawClient::new(stream);
    let head = client.request(&upgrade_request("/websockify", "")).await;
    head.starts_with("HTTP/1.1 101").then_some(client)
}

/// Sends `request` through an open WebSocket and collects what comes back until the target
/// closes.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: RawClient<S>,
    request: &[u8],
) -> String {
    client.send(true, 0x2, request).await;
    let mut got = Vec::new();
    while let Some(frame) = client.read_frame().await {
        match frame.opcode {
            0x8 => break,
            _ => got.extend_from_slice(&frame.payload),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// GET /marker.txt through the proxy at `addr`, retrying (bounded) while the program starts.
async fn fetch(addr: SocketAddr) -> String {
    let client = bounded("the wrapped program to answer", async {
        loop {
            if let Ok(stream) = TcpStream::connect(addr).await {
                if let Some(client) = upgrade(stream).await {
                    return client;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    exchange(client, b"GET /marker.txt HTTP/1.0\r\n\r\n").await
}

/// The loopback port the binary moved the program to (from its start-up line).
async fn moved_port(binary: &LoggedBinary) -> u16 {
    let line = binary.wait_for("moved to loopback port").await;
    line.rsplit(' ').next().unwrap().trim().parse().unwrap()
}

fn python_http(port: u16, bind: &str, dir: &Path) -> Vec<String> {
    [
        "python3",
        "-m",
        "http.server",
        &port.to_string(),
        "--bind",
        bind,
        "--directory",
        dir.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

async fn start(opts: &[&str], listen: &str, command: &[String]) -> LoggedBinary {
    let mut args: Vec<&str> = opts.to_vec();
    args.push(listen);
    args.push("--");
    args.extend(command.iter().map(String::as_str));
    LoggedBinary::start(&args).await
}

#[tokio::test]
async fn python_http_server_is_reached_through_a_websocket_over_ipv4() {
    let port = free_port();
    let (dir, marker) = site("ipv4");
    let binary = start(
        &[],
        &format!("127.0.0.1:{port}"),
        &python_http(port, "127.0.0.1", &dir),
    )
    .await;
    let answer = fetch(binary.addr).await;
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    assert!(answer.ends_with(&marker), "{answer}");
    // The program's bind of PORT went to loopback port NEW, where it answers HTTP directly.
    let new = moved_port(&binary).await;
    assert_ne!(new, port);
    assert!(TcpStream::connect(("127.0.0.1", new)).await.is_ok());
}

#[tokio::test]
async fn python_http_server_bound_to_ipv6_is_reached_dual_stack_and_v6_only() {
    if !has_ipv6() {
        eprintln!("SKIPPED: no IPv6 loopback on this machine");
        return;
    }
    // `::` is Python's dual-stack socket (IPV6_V6ONLY off); `::1` an IPv6-only address.
    for bind in ["::", "::1"] {
        let port = free_port();
        let (dir, marker) = site("ipv6");
        let binary = start(
            &[],
            &format!("[::1]:{port}"),
            &python_http(port, bind, &dir),
        )
        .await;
        let addr: SocketAddr = format!("[::1]:{port}").parse().unwrap();
        let answer = fetch(addr).await;
        assert!(answer.ends_with(&marker), "--bind {bind}: {answer}");
        // Moved to [::1]:NEW, not left on the wildcard: nothing answers NEW on 127.0.0.1.
        let new = moved_port(&binary).await;
        assert!(
            TcpStream::connect(("::1", new)).await.is_ok(),
            "--bind {bind}"
        );
        assert!(
            TcpStream::connect(("127.0.0.1", new)).await.is_err(),
            "--bind {bind}"
        );
    }
}

#[tokio::test]
async fn a_vnc_server_is_reached_through_a_websocket() {
    let Some(xvnc) = ["/usr/bin/Xtigervnc", "/usr/bin/Xvnc"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        eprintln!(
            "SKIPPED: no Xtigervnc or Xvnc installed (apt-get install tigervnc-standalone-server)"
        );
        return;
    };
    let port = free_port();
    // A display nobody uses (X keeps a lock file per display).
    let display = (100..200)
        .find(|d| !Path::new(&format!("/tmp/.X{d}-lock")).exists())
        .unwrap();
    let command = [
        xvnc,
        &format!(":{display}"),
        "-rfbport",
        &port.to_string(),
        "-SecurityTypes",
        "None",
    ]
    .map(String::from)
    .to_vec();
    let binary = start(&[], &format!("127.0.0.1:{port}"), &command).await;
    let mut client = bounded("the VNC server to answer", async {
        loop {
            if let Ok(stream) = TcpStream::connect(binary.addr).await {
                if let Some(client) = upgrade(stream).await {
                    return client;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(client.read_data(12).await, b"RFB 003.008\n");
}

#[tokio::test]
async fn exit_mode_exits_with_the_programs_status() {
    for (script, want) in [("exit 7", 7), ("kill -TERM $$", 128 + 15)] {
        let port = free_port();
        let command = ["sh", "-c", script].map(String::from).to_vec();
        let mut binary = start(&[], &format!("127.0.0.1:{port}"), &command).await;
        let status = binary.exit_status(Duration::from_secs(5)).await;
        assert_eq!(status.code(), Some(want), "{script}");
    }
}

#[tokio::test]
async fn ignore_mode_keeps_serving_and_leaves_no_zombie() {
    let port = free_port();
    let pid_file = temp_dir("ignore").join("pid");
    let script = format!("echo $$ > {}; exit 3", pid_file.display());
    let command = ["sh", "-c", &script].map(String::from).to_vec();
    let mut binary = start(
        &["--wrap-mode=ignore"],
        &format!("127.0.0.1:{port}"),
        &command,
    )
    .await;
    binary.wait_for("Wrapped command exited").await;
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Reaped: gone from /proc, not a zombie child of ours.
    procs::wait_gone(pid, WAIT);
    assert!(
        procs::children(binary.pid())
            .iter()
            .all(|(_, s)| s.state != 'Z'),
        "a zombie child"
    );
    // Still serving: an HTTP request gets an answer.
    let answer = send_and_read_all(binary.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        answer.starts_with(b"HTTP/1.1 405"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(binary.is_running());
}

#[tokio::test]
async fn respawn_mode_restarts_a_killed_program_which_serves_again() {
    let port = free_port();
    let (dir, marker) = site("respawn");
    let binary = start(
        &["--wrap-mode=respawn"],
        &format!("127.0.0.1:{port}"),
        &python_http(port, "127.0.0.1", &dir),
    )
    .await;
    assert!(fetch(binary.addr).await.ends_with(&marker));
    let python = procs::children(binary.pid())[0].0;
    procs::signal(python, libc::SIGKILL);
    procs::wait_gone(python, WAIT);
    let again = procs::poll("a new python", WAIT, || {
        procs::children(binary.pid())
            .into_iter()
            .find(|(pid, s)| *pid != python && s.state != 'Z')
    });
    assert_ne!(again.0, python);
    // The new one found the shim file again and bound the same loopback port.
    assert!(fetch(binary.addr).await.ends_with(&marker));
}

#[tokio::test]
async fn respawn_mode_throttles_a_program_that_dies_at_once() {
    let port = free_port();
    let command = ["sh", "-c", "exit 1"].map(String::from).to_vec();
    let binary = start(
        &["--wrap-mode=respawn"],
        &format!("127.0.0.1:{port}"),
        &command,
    )
    .await;
    let first = Instant::now();
    binary.wait_for("respawning too fast").await;
    assert_eq!(binary.count("Starting 'sh -c exit 1'"), 3);
    // The fourth start waits for the window: 10 s after the first.
    // Longer than the helpers' usual bound (10 s): the window itself is 10 s.
    tokio::time::timeout(Duration::from_secs(15), async {
        while binary.count("Starting 'sh") < 4 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a fourth start");
    assert!(
        first.elapsed() >= Duration::from_millis(9500),
        "{:?}",
        first.elapsed()
    );
    assert_eq!(binary.count("respawning too fast"), 1, "one warning");
}

#[tokio::test]
async fn stopping_sends_sigterm_to_the_program_and_reaps_it() {
    let port = free_port();
    let dir = temp_dir("sigterm");
    let (pid_file, term_file) = (dir.join("pid"), dir.join("term"));
    // The program and what it started (its `sleep`) are in one process group: both get it.
    let script = format!(
        "echo $$ > {}; trap 'echo got-term > {}; exit 0' TERM; while :; do sleep 0.1; done",
        pid_file.display(),
        term_file.display()
    );
    let command = ["sh", "-c", &script].map(String::from).to_vec();
    let mut binary = start(&[], &format!("127.0.0.1:{port}"), &command).await;
    let pid: i32 = procs::poll("the program's pid", WAIT, || {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    });
    // In a process group of its own: a Ctrl-C at the terminal reaches websockify only.
    assert_eq!(stat(pid).unwrap().pgrp, pid);
    let started = Instant::now();
    procs::signal(binary.pid(), libc::SIGTERM);
    let status = binary.exit_status(Duration::from_secs(8)).await;
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "SIGKILL'd after the grace?"
    );
    assert_eq!(
        std::fs::read_to_string(&term_file).unwrap().trim(),
        "got-term"
    );
    procs::wait_gone(pid, WAIT);
}

#[tokio::test]
async fn wrapping_works_with_unix_listen() {
    let port = free_port();
    let (dir, marker) = site("unix");
    let sock = dir.join("ws.sock");
    let unix_listen = format!("--unix-listen={}", sock.display());
    let port_text = port.to_string();
    let mut args = vec![unix_listen.as_str(), "--"];
    let command = python_http(port, "127.0.0.1", &dir);
    args.insert(1, &port_text);
    args.extend(command.iter().map(String::as_str));
    let binary = LoggedBinary::spawn(&args);
    binary.wait_for("Listen on").await;
    let client = bounded("the wrapped program behind the Unix socket", async {
        loop {
            if let Ok(stream) = UnixStream::connect(&sock).await {
                if let Some(client) = upgrade(stream).await {
                    return client;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let answer = exchange(client, b"GET /marker.txt HTTP/1.0\r\n\r\n").await;
    assert!(answer.ends_with(&marker), "{answer}");
    // The program's port was moved too: nobody listens on PORT.
    assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());
    drop(binary);
}

#[test]
fn a_program_that_cannot_be_found_fails_at_start_up() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_websockify"))
        .args([
            "-D",
            &format!("127.0.0.1:{}", free_port()),
            "--",
            "no-such-program-here",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no-such-program-here") && stderr.contains("not found"),
        "{stderr}"
    );
}
