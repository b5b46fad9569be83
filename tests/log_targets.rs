//! Where the real binary's log goes besides stderr: `--log-file` (appended, reopened on
//! SIGUSR1 as logrotate expects), `--syslog` to a real Unix datagram socket or a real UDP
//! socket (RFC 5424, or RFC 3164 with `--legacy-syslog`), and `--traffic` on stdout.

use websockify_test_support as support;

use std::os::unix::net::UnixDatagram as StdUnixDatagram;
use std::process::Command;
use std::time::Duration;

use support::*;
use tokio::net::{TcpStream, UdpSocket, UnixDatagram};

/// One short echo session through `proxy`.
async fn echo_session(proxy: std::net::SocketAddr) {
    let stream = TcpStream::connect(proxy).await.unwrap();
    let mut client = RawClient::new(stream);
    let head = client.request(&upgrade_request("/", "")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    client.send(true, 0x2, b"hello").await;
    assert_eq!(client.read_data(5).await, b"hello");
    client.send(true, 0x8, &[0x03, 0xE8]).await;
    assert_eq!(client.read_close().await.0, 1000);
}

/// Waits (bounded) until the file at `path` holds `needle`; returns its text.
async fn wait_for_in_file(path: &std::path::Path, needle: &str) -> String {
    bounded(&format!("{needle:?} in {}", path.display()), async {
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.contains(needle) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn the_log_file_gets_the_lines_and_sigusr1_reopens_it_after_a_rename() {
    let dir = temp_dir("log-file");
    let log = dir.join("websockify.log");
    std::fs::write(&log, "an older line\n").unwrap();
    let target = echo_server().await;
    let server = LoggedBinary::start(&[
        "--log-file",
        log.to_str().unwrap(),
        "127.0.0.1:0",
        &target.to_string(),
    ])
    .await;
    let text = wait_for_in_file(&log, "  - Listen on").await;
    assert!(text.starts_with("an older line\n"), "appends: {text}");
    assert!(!text.contains('\x1b'), "no colours in the file: {text:?}");

    // logrotate: move the file away, then SIGUSR1.
    let rotated = dir.join("websockify.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    server.signal(rustix::process::Signal::USR1);
    server.wait_for("reopened the log file").await;
    echo_session(server.addr).await;
    let text = wait_for_in_file(&log, "closed: client closed (1000").await;
    assert!(text.contains("WebSocket connection"), "{text}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("  - Listen on"), "{old}");
    assert!(!old.contains("WebSocket connection"), "{old}");
}

/// Receives datagrams until one contains `needle` (bounded); returns it.
async fn recv_unix(socket: &UnixDatagram, needle: &str) -> Vec<u8> {
    bounded(&format!("a syslog datagram with {needle:?}"), async {
        let mut buf = vec![0u8; 65536];
        loop {
            let n = socket.recv(&mut buf).await.unwrap();
            if String::from_utf8_lossy(&buf[..n]).contains(needle) {
                return buf[..n].to_vec();
            }
        }
    })
    .await
}

async fn recv_udp(socket: &UdpSocket, needle: &str) -> Vec<u8> {
    bounded(&format!("a syslog datagram with {needle:?}"), async {
        let mut buf = vec![0u8; 65536];
        loop {
            let n = socket.recv(&mut buf).await.unwrap();
            if String::from_utf8_lossy(&buf[..n]).contains(needle) {
                return buf[..n].to_vec();
            }
        }
    })
    .await
}

fn hostname() -> String {
    let out = Command::new("hostname").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Checks an RFC 5424 message from `pid`: `<PRI>1 YYYY-MM-DDTHH:MM:SSZ HOST websockify PID - - `
/// and returns its text.
fn rfc5424(datagram: &[u8], pri: u8, pid: i32) -> String {
    let text = String::from_utf8(datagram.to_vec()).unwrap();
    let prefix = format!("<{pri}>1 ");
    let rest = text
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{text:?} does not start with {prefix:?}"));
    let (stamp, rest) = rest.split_once(' ').unwrap();
    let shape: String = stamp
        .chars()
        .map(|c| if c.is_ascii_digit() { 'd' } else { c })
        .collect();
    assert_eq!(shape, "dddd-dd-ddTdd:dd:ddZ", "{text:?}");
    let fields = format!("{} websockify {pid} - - ", hostname());
    rest.strip_prefix(&fields)
        .unwrap_or_else(|| panic!("{text:?}: expected {fields:?} after the time"))
        .to_owned()
}

#[tokio::test]
async fn syslog_to_a_unix_socket_is_rfc5424_with_facility_user() {
    let dir = temp_dir("syslog-unix");
    let path = dir.join("log.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let target = echo_server().await;
    let server = LoggedBinary::start(&[
        "--syslog",
        path.to_str().unwrap(),
        "127.0.0.1:0",
        &target.to_string(),
    ])
    .await;
    let pid = server.pid();
    // user (1) × 8 + informational (6)
    let line = recv_unix(&socket, "  - Listen on").await;
    let text = rfc5424(&line, 14, pid);
    assert!(text.starts_with("  - Listen on 127.0.0.1:"), "{text:?}");
    assert!(!text.ends_with('\n'), "{text:?}");
    echo_session(server.addr).await;
    let line = recv_unix(&socket, "WebSocket connection").await;
    let text = rfc5424(&line, 14, pid);
    assert!(text.contains("conn{id=1 peer=127.0.0.1:"), "{text:?}");
    assert!(!text.contains("INFO"), "the severity is in PRI: {text:?}");

    // A warning: a refused target. user × 8 + warning (4) = 12.
    let bad = closed_port().await;
    let server = LoggedBinary::start(&[
        "--syslog",
        path.to_str().unwrap(),
        "127.0.0.1:0",
        &bad.to_string(),
    ])
    .await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let mut client = RawClient::new(stream);
    let head = client.request(&upgrade_request("/", "")).await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    let line = recv_unix(&socket, "refused").await;
    let text = String::from_utf8_lossy(&line).into_owned();
    assert!(
        text.starts_with("<12>1 ") || text.starts_with("<11>1 "),
        "{text:?}"
    );
}

#[tokio::test]
async fn legacy_syslog_over_udp_is_rfc3164() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let target = echo_server().await;
    let server = LoggedBinary::start(&[
        "--syslog",
        &addr.to_string(),
        "--legacy-syslog",
        "127.0.0.1:0",
        &target.to_string(),
    ])
    .await;
    let line = recv_udp(&socket, "  - Listen on").await;
    let text = String::from_utf8(line).unwrap();
    let prefix = format!("<14>websockify[{}]:   - Listen on 127.0.0.1:", server.pid());
    assert!(text.starts_with(&prefix), "{text:?} vs {prefix:?}");
}

#[tokio::test]
async fn a_syslog_socket_that_goes_away_loses_lines_not_the_server_and_is_found_again() {
    let dir = temp_dir("syslog-gone");
    let path = dir.join("log.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let target = echo_server().await;
    let server = LoggedBinary::start(&[
        "--syslog",
        path.to_str().unwrap(),
        "127.0.0.1:0",
        &target.to_string(),
    ])
    .await;
    recv_unix(&socket, "  - Listen on").await;
    // syslogd restarts: the socket is gone for a while.
    drop(socket);
    std::fs::remove_file(&path).unwrap();
    echo_session(server.addr).await;
    server.wait_for("closed: client closed (1000").await;
    // ... and back, at the same path.
    let socket = UnixDatagram::bind(&path).unwrap();
    echo_session(server.addr).await;
    let line = recv_unix(&socket, "WebSocket connection").await;
    assert!(String::from_utf8_lossy(&line).contains("conn{id=2 "));
}

#[tokio::test]
async fn a_syslog_socket_nobody_reads_never_blocks_the_server() {
    let dir = temp_dir("syslog-full");
    let path = dir.join("log.sock");
    // Bound but never read: its receive queue fills up.
    let _socket = StdUnixDatagram::bind(&path).unwrap();
    let target = echo_server().await;
    let server = LoggedBinary::start(&[
        "-v",
        "--syslog",
        path.to_str().unwrap(),
        "127.0.0.1:0",
        &target.to_string(),
    ])
    .await;
    // Far more lines than the queue holds (net.unix.max_dgram_qlen, 512 by default; each
    // session logs several with -v). A blocking send would stall here.
    bounded("300 sessions with a stuck syslog", async {
        for _ in 0..300 {
            echo_session(server.addr).await;
        }
    })
    .await;
}

#[tokio::test]
async fn traffic_prints_the_reference_symbols_on_stdout() {
    let target = echo_server().await;
    let server = LoggedBinary::start(&["--traffic", "127.0.0.1:0", &target.to_string()]).await;
    echo_session(server.addr).await;
    let out = server.wait_for_stdout("}>{<").await;
    assert!(out.contains("Traffic Legend:"), "{out:?}");
    let symbols = out.rsplit('\n').next().unwrap();
    assert_eq!(symbols, "}>{<", "{out:?}");
}

#[test]
fn unreachable_log_targets_are_start_up_errors_naming_the_option() {
    let dir = temp_dir("log-errors");
    let cases = [
        (
            vec![
                "--log-file".to_owned(),
                dir.join("missing/x.log").display().to_string(),
            ],
            "--log-file ",
        ),
        (
            vec![
                "--syslog".to_owned(),
                dir.join("missing.sock").display().to_string(),
            ],
            "--syslog ",
        ),
        (
            vec!["--syslog=localhost:x".to_owned()],
            "--syslog localhost:x",
        ),
    ];
    for (args, want) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_websockify"))
            .args(&args)
            .args(["127.0.0.1:0", "127.0.0.1:1"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    }
}
