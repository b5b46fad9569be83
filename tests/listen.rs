//! Listening addresses: IPv4, IPv6, host names, all interfaces, `-6`; and Unix-socket targets.

mod support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::{TcpStream, UnixListener};
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
    websockify::bind(&settings.listen, settings.prefer_ipv6).await
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
    let listener = websockify::UnixListener::bind(&path).unwrap();
    assert_eq!(
        websockify::Listener::local_addr(&listener).unwrap(),
        websockify::Addr::Unix(Some(path.clone()))
    );
    let server = websockify::Server::new(settings_to(echo_server().await)).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(listener, async {
        let _ = stopped.await;
    }));
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
