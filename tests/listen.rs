//! Listening addresses: IPv4, IPv6, host names, all interfaces, `-6`; Unix-socket targets;
//! `--unix-listen` and `--inetd` through the real binary.

use websockify_test_support as support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::net::{TcpStream, UnixListener, UnixStream};
use websockify::{Listen, Settings, TargetSpec};

use support::*;

fn listen_on(host: &str, prefer_ipv6: bool) -> Settings {
    let mut settings = Settings::new(
        Listen::Tcp {
            host: host.into(),
            port: 0,
        },
        TargetSpec::Tcp {
            host: "127.0.0.1".into(),
            port: 1,
        },
    );
    settings.prefer_ipv6 = prefer_ipv6;
    settings
}

async fn bind(settings: &Settings) -> std::io::Result<websockify::TcpListener> {
    match websockify::bind(&settings.listen, settings.prefer_ipv6).await? {
        websockify::Bound::Tcp(listener) => Ok(listener),
        other => panic!("a TCP address bound {other:?}"),
    }
}

fn ipv6_available() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

#[tokio::test]
async fn empty_host_means_all_ipv4_interfaces() {
    let listener = bind(&listen_on("", false)).await.unwrap();
    let addr = listener.socket_addr();
    assert_eq!(addr.ip(), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    TcpStream::connect(("127.0.0.1", addr.port()))
        .await
        .unwrap();
}

#[tokio::test]
async fn empty_host_with_prefer_ipv6_is_dual_stack() {
    if !ipv6_available() {
        eprintln!("no IPv6 on this machine; skipped");
        return;
    }
    let listener = bind(&listen_on("", true)).await.unwrap();
    let addr = listener.socket_addr();
    assert_eq!(addr.ip(), IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    // Both families reach it.
    TcpStream::connect(("127.0.0.1", addr.port()))
        .await
        .unwrap();
    TcpStream::connect(("::1", addr.port())).await.unwrap();
}

#[tokio::test]
async fn ipv6_literal_listens_on_ipv6() {
    if !ipv6_available() {
        eprintln!("no IPv6 on this machine; skipped");
        return;
    }
    let listener = bind(&listen_on("::1", false)).await.unwrap();
    assert_eq!(listener.socket_addr().ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
}

#[tokio::test]
async fn host_names_are_resolved_and_prefer_ipv6_picks_an_ipv6_address() {
    let v4 = websockify::resolve("localhost", 80, false).await.unwrap();
    assert!(v4.ip().is_loopback());
    let any = websockify::resolve("localhost", 80, true).await.unwrap();
    assert!(any.ip().is_loopback());
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(("localhost", 80))
        .await
        .unwrap()
        .collect();
    if addrs.iter().any(|a| a.is_ipv6()) {
        assert!(
            any.is_ipv6(),
            "-6 should prefer the IPv6 address of localhost"
        );
    }
}

#[tokio::test]
async fn unresolvable_host_is_an_error_naming_it() {
    let err = bind(&listen_on("no-such-host.invalid", false))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-such-host.invalid"), "{err}");
}

#[tokio::test]
async fn address_in_use_is_an_error_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut settings = listen_on("127.0.0.1", false);
    settings.listen = Listen::Tcp {
        host: "127.0.0.1".into(),
        port,
    };
    let err = websockify::bind(&settings.listen, false).await.unwrap_err();
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn unix_socket_target_is_relayed() {
    let dir = temp_dir("unix-target");
    let path = dir.join("echo.sock");
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let mut settings = settings_to("127.0.0.1:1".parse().unwrap());
    settings.target = websockify::Targets::Fixed(TargetSpec::Unix(path));
    let proxy = start_proxy(settings).await;
    let (mut client, _) = RawClient::connect(proxy.addr, Some("binary")).await;
    client.send(true, 0x2, b"over a unix socket").await;
    assert_eq!(client.read_data(18).await, b"over a unix socket");
    proxy.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_server_serves_a_unix_listener_like_a_tcp_one() {
    let dir = temp_dir("unix-listen");
    let path = dir.join("ws.sock");
    let listener = websockify::UnixListener::bind(&path, 0o600).unwrap();
    assert_eq!(
        websockify::Listener::local_addr(&listener).unwrap(),
        websockify::Addr::Unix(Some(path.clone()))
    );
    let server = websockify::Server::new(settings_to(echo_server().await)).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(listener, support::once(stopped), std::future::pending));
    let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
    let (mut client, head) = RawClient::upgrade(stream, Some("binary")).await;
    assert!(head.contains("sec-websocket-protocol: binary"), "{head}");
    client.send(true, 0x2, b"through a unix listener").await;
    assert_eq!(client.read_data(23).await, b"through a unix listener");
    // A Flash policy request is sniffed from the first byte here too (it is read, not
    // peeked, on a Unix socket, and must still reach the policy check).
    let mut policy = tokio::net::UnixStream::connect(&path).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    policy.write_all(b"<policy-file-request/>\0").await.unwrap();
    let mut answer = Vec::new();
    bounded("the policy answer", policy.read_to_end(&mut answer))
        .await
        .unwrap();
    assert!(answer.starts_with(b"<cross-domain-policy>"), "{answer:?}");
    let _ = stop.send(());
    bounded("server shutdown", task).await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

// ---- --unix-listen and --inetd through the real binary ----

const BIN: &str = env!("CARGO_BIN_EXE_websockify");

/// The binary, killed if a test fails before it is reaped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Child {
    fn spawn(cmd: &mut Command) -> Child {
        Child(
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    /// SIGTERM, then the exit status (bounded).
    async fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        self.exited().await
    }

    async fn exited(&mut self) -> std::process::ExitStatus {
        bounded("the binary's exit", async {
            loop {
                if let Some(status) = self.0.try_wait().unwrap() {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }
}

/// Runs the binary to its end (it is expected to refuse to start): (status, stderr).
fn refused(cmd: &mut Command) -> (i32, String) {
    // --timeout: should it start after all, it stops by itself.
    let out = cmd
        .arg("--timeout=2")
        .stdout(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Connects to the Unix socket at `path` once the binary listens there (bounded).
async fn connect_unix(path: &Path) -> UnixStream {
    let started = Instant::now();
    loop {
        match UnixStream::connect(path).await {
            Ok(stream) => return stream,
            Err(_) if started.elapsed() < WAIT => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(err) => panic!("never listened on {}: {err}", path.display()),
        }
    }
}

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

fn mode_of(path: &Path) -> u32 {
    let meta = std::fs::symlink_metadata(path).unwrap();
    assert!(
        meta.file_type().is_socket(),
        "{} is no socket",
        path.display()
    );
    meta.permissions().mode() & 0o7777
}

/// `sh -c 'umask U; exec websockify ARGS'`: the mode must not depend on the caller's umask.
fn with_umask(umask: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &format!("umask {umask}; exec \"$0\" \"$@\""), BIN])
        .args(args);
    cmd
}

#[tokio::test]
async fn unix_listen_serves_a_session_with_mode_0600_and_removes_its_socket_at_exit() {
    let echo = echo_server().await.to_string();
    let dir = temp_dir("unix-listen-bin");
    let path = dir.join("ws.sock");
    let path_s = path.to_str().unwrap();
    // A permissive umask: the default 0600 still holds.
    let mut child = Child::spawn(&mut with_umask("000", &["--unix-listen", path_s, &echo]));
    let stream = connect_unix(&path).await;
    assert_eq!(mode_of(&path), 0o600);
    echo_session(stream, b"over --unix-listen").await;
    let status = child.terminate().await;
    assert!(status.success(), "{status:?}");
    assert!(!path.exists(), "the socket file stays after a clean exit");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn unix_listen_mode_is_applied_whatever_the_umask() {
    let echo = echo_server().await.to_string();
    let dir = temp_dir("unix-listen-mode");
    for (umask, mode, want) in [("077", "660", 0o660), ("000", "0640", 0o640)] {
        let path = dir.join(format!("ws-{mode}.sock"));
        let path_s = path.to_str().unwrap();
        let args = ["--unix-listen", path_s, "--unix-listen-mode", mode, &echo];
        let mut child = Child::spawn(&mut with_umask(umask, &args));
        let stream = connect_unix(&path).await;
        assert_eq!(mode_of(&path), want, "umask {umask}, mode {mode}");
        echo_session(stream, b"mode").await;
        assert!(child.terminate().await.success());
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn unix_listen_replaces_a_stale_socket_but_not_a_live_one() {
    let echo = echo_server().await.to_string();
    let dir = temp_dir("unix-listen-stale");
    let path = dir.join("ws.sock");
    let path_s = path.to_str().unwrap();

    // Live: someone accepts there. A start-up error naming the file; the socket stays.
    let live = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let (code, stderr) = refused(Command::new(BIN).args(["--unix-listen", path_s, &echo]));
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(path_s), "{stderr}");
    assert!(stderr.contains("another process is listening"), "{stderr}");
    assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());

    // Stale: the file of a socket nobody listens on any more. Replaced.
    drop(live);
    assert!(path.exists());
    let mut child = Child::spawn(Command::new(BIN).args(["--unix-listen", path_s, &echo]));
    let stream = connect_unix(&path).await;
    echo_session(stream, b"after a stale socket").await;
    assert!(child.terminate().await.success());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unix_listen_refuses_a_regular_file_naming_it_and_leaves_it_alone() {
    let dir = temp_dir("unix-listen-file");
    let path = dir.join("precious.txt");
    std::fs::write(&path, b"user data").unwrap();
    let path_s = path.to_str().unwrap();
    let (code, stderr) =
        refused(Command::new(BIN).args(["--unix-listen", path_s, "127.0.0.1:5900"]));
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr.trim(),
        format!("websockify: cannot listen on unix:{path_s}: the file exists and is not a socket (left alone)")
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"user data");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn inetd_accepts_from_a_listening_tcp_socket_on_stdin() {
    let echo = echo_server().await.to_string();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stdin = Stdio::from(OwnedFd::from(listener));
    let mut child = Child::spawn(Command::new(BIN).args(["--inetd", &echo]).stdin(stdin));
    // The kernel queues the connection until the binary accepts it.
    let stream = bounded("connect", TcpStream::connect(addr)).await.unwrap();
    echo_session(stream, b"over --inetd").await;
    // A second connection: it keeps accepting (inetd `wait` mode), it does not serve one.
    let stream = bounded("connect", TcpStream::connect(addr)).await.unwrap();
    echo_session(stream, b"again").await;
    assert!(child.terminate().await.success());
}

#[tokio::test]
async fn inetd_accepts_from_a_listening_unix_socket_on_stdin_and_leaves_its_file() {
    let echo = echo_server().await.to_string();
    let dir = temp_dir("inetd-unix");
    let path = dir.join("inetd.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let stdin = Stdio::from(OwnedFd::from(listener));
    let mut child = Child::spawn(Command::new(BIN).args(["--inetd", &echo]).stdin(stdin));
    let stream = connect_unix(&path).await;
    echo_session(stream, b"over --inetd, unix").await;
    assert!(child.terminate().await.success());
    assert!(path.exists(), "a socket file we did not create was removed");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn inetd_refuses_a_stdin_that_is_not_a_listening_socket() {
    let (connected, _other) = std::os::unix::net::UnixStream::pair().unwrap();
    let stdins = [
        ("/dev/null", Stdio::null()),
        ("a connected socket", Stdio::from(OwnedFd::from(connected))),
    ];
    for (what, stdin) in stdins {
        let (code, stderr) = refused(
            Command::new(BIN)
                .args(["--inetd", "127.0.0.1:5900"])
                .stdin(stdin),
        );
        assert_eq!(code, 1, "{what}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{what}: {stderr}");
        assert!(
            stderr.starts_with("websockify: --inetd: standard input is not a listening socket"),
            "{what}: {stderr}"
        );
    }
}
