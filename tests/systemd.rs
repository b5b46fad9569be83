//! systemd: `--systemd` socket activation (real listening sockets passed as fds 3, 4 with
//! LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES) and sd_notify (a real Unix datagram socket as
//! NOTIFY_SOCKET), through the real binary.

use websockify_test_support as support;

use std::os::fd::OwnedFd;
use std::process::Command;
use std::time::Duration;

use rustix::process::Signal;
use tokio::net::{TcpStream, UnixStream};

use support::systemd::{spawn_activated, ListenPid, NotifySocket};
use support::*;

/// A WebSocket session over `stream` through the binary to an echo target.
async fn echo_session<S>(stream: S, what: &[u8])
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut client, head) = RawClient::upgrade(stream, Some("binary")).await;
    assert!(head.contains("sec-websocket-protocol: binary"), "{head}");
    client.send(true, 0x2, what).await;
    assert_eq!(client.read_data(what.len()).await, what);
}

fn tcp_listener() -> (std::net::TcpListener, std::net::SocketAddr) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

// ---- socket activation ----

#[tokio::test]
async fn a_tcp_socket_passed_as_fd_3_serves_sessions() {
    let echo = echo_server().await.to_string();
    let (listener, addr) = tcp_listener();
    let mut binary = spawn_activated(
        &["--systemd", &echo],
        vec![OwnedFd::from(listener)],
        None,
        ListenPid::Own,
        &[],
    );
    // The kernel queues the connection until the binary accepts it.
    let stream = bounded("connect", TcpStream::connect(addr)).await.unwrap();
    echo_session(stream, b"over an activated socket").await;
    let stream = bounded("connect", TcpStream::connect(addr)).await.unwrap();
    echo_session(stream, b"again").await;
    let line = binary.wait_for("Listen on").await;
    assert!(
        line.contains(&format!("{addr} (systemd: unknown)")),
        "{line}"
    );
    binary.signal(Signal::TERM);
    let (status, _) = binary.exit_within(WAIT).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn a_tcp_and_a_unix_socket_passed_are_both_served_and_named() {
    let echo = echo_server().await.to_string();
    let (tcp, addr) = tcp_listener();
    let dir = temp_dir("systemd-unix");
    let path = dir.join("activated.sock");
    let unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let binary = spawn_activated(
        &["--systemd", &echo],
        vec![OwnedFd::from(tcp), OwnedFd::from(unix)],
        Some("web:local"),
        ListenPid::Own,
        &[],
    );
    let stream = bounded("connect unix", UnixStream::connect(&path))
        .await
        .unwrap();
    echo_session(stream, b"over the unix one").await;
    let stream = bounded("connect tcp", TcpStream::connect(addr))
        .await
        .unwrap();
    echo_session(stream, b"over the tcp one").await;
    let line = binary.wait_for("Listen on").await;
    assert!(line.contains(&format!("{addr} (systemd: web)")), "{line}");
    assert!(
        line.contains(&format!("unix:{} (systemd: local)", path.display())),
        "{line}"
    );
    drop(binary);
    assert!(path.exists(), "a socket file systemd made was removed");
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs the binary to its end, which must be a refusal to start: exit status 1 and one line
/// on stderr, returned. `what` names the case in a failure.
async fn one_line_refusal(mut binary: LoggedBinary, what: &str) -> String {
    let (status, _) = binary.exit_within(WAIT).await;
    // The reader thread may still be collecting the last line.
    binary.wait_for("websockify: ").await;
    let lines = binary.lines();
    assert_eq!(status.code(), Some(1), "{what}: {lines:?}");
    assert_eq!(lines.len(), 1, "{what}: {lines:?}");
    lines.into_iter().next().unwrap_or_default()
}

#[tokio::test]
async fn sockets_meant_for_another_process_are_not_taken() {
    let (listener, _) = tcp_listener();
    let binary = spawn_activated(
        &["--systemd", "127.0.0.1:5900"],
        vec![OwnedFd::from(listener)],
        None,
        ListenPid::Other,
        &[],
    );
    let line = one_line_refusal(binary, "LISTEN_PID=1").await;
    assert!(
        line.starts_with("websockify: --systemd: LISTEN_PID=\"1\" is not this process"),
        "{line}"
    );
}

#[tokio::test]
async fn a_socket_that_is_not_a_listening_stream_socket_is_a_one_line_error() {
    let bound_only =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    bound_only
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let file = std::fs::File::open("/dev/null").unwrap();
    let cases: [(&str, OwnedFd, &str); 3] = [
        (
            "not listening",
            OwnedFd::from(bound_only),
            "(not listening)",
        ),
        (
            "udp",
            OwnedFd::from(udp),
            "(a datagram socket: use ListenStream=)",
        ),
        ("a file", OwnedFd::from(file), "not a listening socket"),
    ];
    for (what, fd, why) in cases {
        let binary = spawn_activated(
            &["--systemd", "127.0.0.1:5900"],
            vec![fd],
            None,
            ListenPid::Own,
            &[],
        );
        let line = one_line_refusal(binary, what).await;
        assert!(
            line.starts_with("websockify: --systemd: fd 3 (unknown): ") && line.contains(why),
            "{what}: {line}"
        );
    }
}

#[tokio::test]
async fn a_socket_count_past_the_sockets_passed_is_a_one_line_error() {
    let (listener, _) = tcp_listener();
    let binary = spawn_activated(
        &["--systemd", "127.0.0.1:5900"],
        vec![OwnedFd::from(listener)],
        None,
        ListenPid::Own,
        &[("LISTEN_FDS", "2")],
    );
    let line = one_line_refusal(binary, "LISTEN_FDS=2").await;
    assert!(
        line.starts_with("websockify: --systemd: fd 4 (unknown): not open"),
        "{line}"
    );
}

#[test]
fn systemd_is_refused_with_daemon_inetd_or_without_sockets() {
    let bin = env!("CARGO_BIN_EXE_websockify");
    let cases: [(&[&str], &str); 3] = [
        (&["--systemd", "-D", "127.0.0.1:5900"], "not with -D"),
        (&["--systemd", "--inetd", "127.0.0.1:5900"], "not --inetd"),
        (&["--systemd", "127.0.0.1:5900"], "LISTEN_PID is not set"),
    ];
    for (args, why) in cases {
        let out = Command::new(bin)
            .args(args)
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDS")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn a_wrapped_program_inherits_no_activation_or_notify_variables() {
    let dir = temp_dir("systemd-wrap");
    let env_file = dir.join("env");
    let mut notify = NotifySocket::at(&dir);
    let (listener, _) = tcp_listener();
    // And the socket itself stays ours (close-on-exec): not open as the program's fd 3.
    let script = format!(
        "env > '{0}'; if [ -e /proc/$$/fd/3 ]; then echo FD3_INHERITED >> '{0}'; fi",
        env_file.display()
    );
    let mut binary = spawn_activated(
        &["--systemd", "5999", "--", "/bin/sh", "-c", &script],
        vec![OwnedFd::from(listener)],
        Some("web"),
        ListenPid::Own,
        &[
            ("NOTIFY_SOCKET", &notify.address),
            ("WATCHDOG_USEC", "10000000"),
        ],
    );
    notify.wait_for("READY=1").await;
    // `--wrap-mode exit`: the program's end ends the server.
    let (status, _) = binary.exit_within(WAIT).await;
    assert!(status.success(), "{status:?}: {:?}", binary.lines());
    let env = std::fs::read_to_string(&env_file).unwrap();
    for name in ["LISTEN_", "NOTIFY_SOCKET", "WATCHDOG_", "FD3_INHERITED"] {
        assert!(!env.contains(name), "{name} inherited:\n{env}");
    }
    assert!(env.contains("REBIND_OLD_PORT=5999"), "{env}");
    drop(notify);
    let _ = std::fs::remove_dir_all(dir);
}

// ---- sd_notify ----

#[tokio::test]
async fn ready_comes_once_a_client_can_be_served() {
    let echo = echo_server().await.to_string();
    let dir = temp_dir("systemd-ready");
    let mut notify = NotifySocket::at(&dir);
    let port = procs::free_port();
    let listen = format!("127.0.0.1:{port}");
    let _binary = LoggedBinary::spawn_command({
        let mut command = Command::new(env!("CARGO_BIN_EXE_websockify"));
        command
            .args([&listen, &echo])
            .env("NOTIFY_SOCKET", &notify.address);
        command
    });
    let ready = notify.wait_for("READY=1").await;
    // Connected right after READY, with no retry: refused if READY came before the bind.
    let stream = TcpStream::connect(&listen)
        .await
        .unwrap_or_else(|e| panic!("READY=1 came before the listener: {e}"));
    echo_session(stream, b"after READY").await;
    assert!(
        ready.contains(&format!("STATUS=listening on {listen}")),
        "{ready:?}"
    );
    assert_eq!(notify.received.len(), 1, "{:?}", notify.received);
    drop(notify);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn sighup_sends_reloading_then_ready_and_sigterm_sends_stopping() {
    let dir = temp_dir("systemd-reload");
    let mut notify = NotifySocket::at(&dir);
    let (listener, _) = tcp_listener();
    let mut binary = spawn_activated(
        &["--systemd", "127.0.0.1:5900"],
        vec![OwnedFd::from(listener)],
        None,
        ListenPid::Own,
        &[("NOTIFY_SOCKET", &notify.address)],
    );
    notify.wait_for("READY=1").await;
    binary.signal(Signal::HUP);
    let reloading = notify.next().await;
    let lines: Vec<&str> = reloading.lines().collect();
    assert!(lines.contains(&"RELOADING=1"), "{reloading:?}");
    let usec = lines
        .iter()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"));
    assert!(usec.parse::<u64>().unwrap() > 0, "{reloading:?}");
    let again = notify.next().await;
    assert!(again.lines().any(|l| l == "READY=1"), "{again:?}");
    binary.signal(Signal::TERM);
    let stopping = notify.next().await;
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    let (status, _) = binary.exit_within(WAIT).await;
    assert!(status.success(), "{status:?}");
    drop(notify);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_watchdog_is_pinged_every_half_watchdog_usec_on_an_abstract_socket() {
    let name = format!("websockify-test-watchdog-{}", std::process::id());
    let mut notify = NotifySocket::abstract_named(&name);
    let (listener, _) = tcp_listener();
    let binary = spawn_activated(
        &["--systemd", "127.0.0.1:5900"],
        vec![OwnedFd::from(listener)],
        None,
        ListenPid::Own,
        &[
            ("NOTIFY_SOCKET", &notify.address),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    notify.wait_for("READY=1").await;
    // Every 100 ms: 15 in 1.5 s (a delayed runtime catches up the missed ticks). Loose enough
    // for a loaded machine, tight enough that pinging every WATCHDOG_USEC (7) fails.
    let pings = notify
        .count_within("WATCHDOG=1", Duration::from_millis(1500))
        .await;
    assert!((10..=20).contains(&pings), "{pings} pings in 1.5 s");
    drop(binary);
}

#[tokio::test]
async fn no_watchdog_for_another_watchdog_pid() {
    let name = format!("websockify-test-watchdog-pid-{}", std::process::id());
    let mut notify = NotifySocket::abstract_named(&name);
    let (listener, _) = tcp_listener();
    let binary = spawn_activated(
        &["--systemd", "127.0.0.1:5900"],
        vec![OwnedFd::from(listener)],
        None,
        ListenPid::Own,
        &[
            ("NOTIFY_SOCKET", &notify.address),
            ("WATCHDOG_USEC", "100000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    notify.wait_for("READY=1").await;
    let pings = notify
        .count_within("WATCHDOG=1", Duration::from_millis(500))
        .await;
    assert_eq!(pings, 0);
    drop(binary);
}

#[tokio::test]
async fn the_watchdog_is_pinged_when_watchdog_pid_names_us_and_zero_usec_means_none() {
    let name = format!("websockify-test-watchdog-own-{}", std::process::id());
    let mut notify = NotifySocket::abstract_named(&name);
    // The shell's pid is the binary's once it execs.
    let mut command = Command::new("/bin/sh");
    command
        .args(["-c", r#"WATCHDOG_PID=$$ exec "$0" "$@""#])
        .arg(env!("CARGO_BIN_EXE_websockify"))
        .args(["127.0.0.1:0", "127.0.0.1:5900"])
        .env("NOTIFY_SOCKET", &notify.address)
        .env("WATCHDOG_USEC", "100000");
    let binary = LoggedBinary::spawn_command(command);
    notify.wait_for("READY=1").await;
    notify.wait_for("WATCHDOG=1").await;
    drop(binary);
    drop(notify);

    // WATCHDOG_USEC=0: no watchdog (an interval of 0 is no interval: it must not be asked for).
    let name = format!("websockify-test-watchdog-zero-{}", std::process::id());
    let mut notify = NotifySocket::abstract_named(&name);
    let (listener, _) = tcp_listener();
    let mut binary = spawn_activated(
        &["--systemd", "127.0.0.1:5900"],
        vec![OwnedFd::from(listener)],
        None,
        ListenPid::Own,
        &[("NOTIFY_SOCKET", &notify.address), ("WATCHDOG_USEC", "0")],
    );
    notify.wait_for("READY=1").await;
    // A reload's round trip through the runtime: the watchdog task, had it been spawned, ran.
    binary.signal(Signal::HUP);
    notify.wait_for("RELOADING=1").await;
    notify.wait_for("READY=1").await;
    binary.signal(Signal::TERM);
    notify.wait_for("STOPPING=1").await;
    let (status, _) = binary.exit_within(WAIT).await;
    assert!(status.success(), "{status:?}: {:?}", binary.lines());
    let lines = binary.lines();
    assert!(!lines.iter().any(|l| l.contains("panicked")), "{lines:?}");
    assert!(
        !notify.received.iter().any(|d| d.contains("WATCHDOG=1")),
        "{:?}",
        notify.received
    );
}

#[tokio::test]
async fn a_notify_socket_that_is_neither_a_path_nor_abstract_is_one_warning() {
    let binary = LoggedBinary::start_with_env(
        &["127.0.0.1:0", "127.0.0.1:5900"],
        &[("NOTIFY_SOCKET", "relative/notify.sock")],
    )
    .await;
    binary
        .wait_for(
            "NOTIFY_SOCKET=\"relative/notify.sock\": not notifying systemd: \
             neither a path nor an abstract socket",
        )
        .await;
}

#[tokio::test]
async fn a_manager_that_cannot_be_reached_is_warned_about_once() {
    let dir = temp_dir("systemd-unreachable");
    let nobody = dir.join("nobody.sock");
    let mut binary = LoggedBinary::start_with_env(
        &["127.0.0.1:0", "127.0.0.1:5900"],
        &[("NOTIFY_SOCKET", nobody.to_str().unwrap())],
    )
    .await;
    // READY=1 failed by now; RELOADING=1 fails before the reload is logged; STOPPING=1 then.
    binary.signal(Signal::HUP);
    binary.wait_for("reloading (SIGHUP)").await;
    binary.signal(Signal::TERM);
    let (status, _) = binary.exit_within(WAIT).await;
    assert!(status.success(), "{status:?}");
    let lines = binary.lines();
    let warnings: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("cannot notify systemd"))
        .collect();
    assert_eq!(warnings.len(), 1, "{lines:?}");
    assert!(
        warnings[0].contains("cannot notify systemd (NOTIFY_SOCKET): "),
        "{lines:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
