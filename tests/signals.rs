//! Signals, driving the real binary: SIGTERM/SIGINT drain the sessions (1001 "Going away" to
//! every client, the target shut down, exit 0 within `--drain-timeout`; a second signal ends
//! at once; `--drain-grace` serves new clients first); SIGHUP reloads the certificate (and the token source) for the next client without
//! touching running sessions; a failed reload keeps the old; a certificate swapped on disk is
//! picked up without a signal.

use websockify_test_support as support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustix::process::Signal;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use support::*;

/// A target that echoes and reports on `ended` when the proxy shuts its side down (EOF).
async fn echo_reporting_eof() -> (SocketAddr, mpsc::UnboundedReceiver<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let addr = tcp_server(move |mut stream| {
        let tx = tx.clone();
        async move {
            let mut buf = [0u8; 4096];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = tx.send(());
        }
    })
    .await;
    (addr, rx)
}

async fn assert_echo<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    client: &mut RawClient<S>,
    what: &[u8],
) {
    client.send(true, 0x2, what).await;
    assert_eq!(client.read_data(what.len()).await, what);
}

#[tokio::test]
async fn sigterm_closes_every_session_with_1001_shuts_the_targets_and_exits_0() {
    let (target, mut target_ended) = echo_reporting_eof().await;
    let mut proxy = LoggedBinary::start(&["127.0.0.1:0", &target.to_string()]).await;
    let mut sessions = Vec::new();
    for i in 0..3u8 {
        let (mut client, _) = RawClient::connect(proxy.addr, Some("binary")).await;
        assert_echo(&mut client, &[i; 10]).await;
        sessions.push(client);
    }
    // A connection still in HTTP (half a request head) just ends.
    let mut http = TcpStream::connect(proxy.addr).await.unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();

    proxy.signal(Signal::TERM);
    for client in &mut sessions {
        assert_eq!(client.read_close().await, (1001, "Going away".to_owned()));
        client.send(true, 0x8, &1001u16.to_be_bytes()).await;
        client.expect_eof().await;
    }
    for _ in 0..3 {
        bounded("a target's EOF", target_ended.recv()).await;
    }
    read_until_dropped(&mut http).await;
    let (status, took) = proxy.exit_within(Duration::from_secs(5)).await;
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(3), "exited after {took:?}");
    // Nothing listens any more.
    assert!(TcpStream::connect(proxy.addr).await.is_err());
}

#[tokio::test]
async fn sigint_drains_as_sigterm_does() {
    let (target, mut target_ended) = echo_reporting_eof().await;
    let mut proxy = LoggedBinary::start(&["127.0.0.1:0", &target.to_string()]).await;
    let (mut client, _) = RawClient::connect(proxy.addr, Some("binary")).await;
    assert_echo(&mut client, b"x").await;
    proxy.signal(Signal::INT);
    assert_eq!(client.read_close().await.0, 1001);
    bounded("the target's EOF", target_ended.recv()).await;
    client.send(true, 0x8, &1001u16.to_be_bytes()).await;
    let (status, _) = proxy.exit_within(Duration::from_secs(5)).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn a_client_that_never_answers_the_close_is_dropped_at_the_drain_timeout() {
    let (target, _ended) = echo_reporting_eof().await;
    let mut proxy =
        LoggedBinary::start(&["--drain-timeout", "1", "127.0.0.1:0", &target.to_string()]).await;
    let (mut client, _) = RawClient::connect(proxy.addr, Some("binary")).await;
    assert_echo(&mut client, b"x").await;
    proxy.signal(Signal::TERM);
    assert_eq!(client.read_close().await.0, 1001);
    // No close frame back: the close handshake would wait 5 s; the drain ends it after 1 s.
    let (status, took) = proxy.exit_within(Duration::from_secs(4)).await;
    assert!(status.success(), "{status:?}");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_millis(2500),
        "exited after {took:?}"
    );
    proxy.wait_for("drain time over").await;
    client.expect_eof().await;
}

#[tokio::test]
async fn a_second_sigterm_during_the_drain_ends_it_at_once() {
    let (target, _ended) = echo_reporting_eof().await;
    let mut proxy =
        LoggedBinary::start(&["--drain-timeout", "60", "127.0.0.1:0", &target.to_string()]).await;
    let (mut client, _) = RawClient::connect(proxy.addr, Some("binary")).await;
    assert_echo(&mut client, b"x").await;
    proxy.signal(Signal::TERM);
    assert_eq!(client.read_close().await.0, 1001);
    proxy.wait_for("stopping: 1 connections").await;
    proxy.signal(Signal::TERM);
    let (status, took) = proxy.exit_within(Duration::from_secs(3)).await;
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(2), "exited after {took:?}");
    proxy.wait_for("second signal").await;
}

#[tokio::test]
async fn drain_grace_serves_new_clients_until_a_second_sigterm_starts_the_drain() {
    let (target, _ended) = echo_reporting_eof().await;
    let mut proxy =
        LoggedBinary::start(&["--drain-grace", "60", "127.0.0.1:0", &target.to_string()]).await;
    let (mut before, _) = RawClient::connect(proxy.addr, Some("binary")).await;
    proxy.signal(Signal::TERM);
    proxy.wait_for("--drain-grace").await;
    // In the grace a running session goes on and a new client is served.
    assert_echo(&mut before, b"x").await;
    let (mut after, _) = RawClient::connect(proxy.addr, Some("binary")).await;
    assert_echo(&mut after, b"y").await;
    proxy.signal(Signal::TERM);
    for client in [&mut before, &mut after] {
        assert_eq!(client.read_close().await.0, 1001);
        client.send(true, 0x8, &1001u16.to_be_bytes()).await;
    }
    let (status, took) = proxy.exit_within(Duration::from_secs(3)).await;
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(2), "exited after {took:?}");
}

// ---- SIGHUP and the certificate watch ----

/// A certificate for localhost with its key, in one PEM file's text; and its DER.
fn cert_and_key() -> (String, Vec<u8>) {
    let (cert, key, der) = self_signed();
    (format!("{cert}{key}"), der)
}

/// A client trusting every certificate of `ders`.
fn trusting(ders: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for der in ders {
        roots.add(CertificateDer::from(der.to_vec())).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A wss session to `addr`, and the certificate the server showed.
async fn wss(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
) -> (RawClient<TlsStream<TcpStream>>, Vec<u8>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = bounded(
        "TLS handshake",
        TlsConnector::from(config.clone()).connect(name, tcp),
    )
    .await
    .unwrap();
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let (client, _) = RawClient::upgrade(tls, Some("binary")).await;
    (client, served)
}

async fn wss_proxy(cert: &Path) -> LoggedBinary {
    let target = echo_server().await;
    LoggedBinary::start(&[
        "--cert",
        cert.to_str().unwrap(),
        "127.0.0.1:0",
        &target.to_string(),
    ])
    .await
}

/// Replaces `path` by a file with `text` atomically (a rename), as deployment tools do.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn sighup_changes_the_certificate_for_the_next_client_and_not_the_running_session() {
    let dir = temp_dir("sighup");
    let cert = dir.join("self.pem");
    let (old_pem, old_der) = cert_and_key();
    let (new_pem, new_der) = cert_and_key();
    std::fs::write(&cert, &old_pem).unwrap();
    let proxy = wss_proxy(&cert).await;
    let config = trusting(&[&old_der, &new_der]);
    let (mut running, served) = wss(proxy.addr, &config).await;
    assert_eq!(served, old_der);
    assert_echo(&mut running, b"before").await;

    // Written in place (not renamed), and the reload asked for at once: the signal, not the
    // file watch, does it.
    std::fs::write(&cert, &new_pem).unwrap();
    proxy.signal(Signal::HUP);
    proxy.wait_for("reloaded certificate").await;
    proxy.wait_for("token and auth sources reloaded").await;

    let (mut next, served) = wss(proxy.addr, &config).await;
    assert_eq!(served, new_der, "the next client gets the new certificate");
    assert_echo(&mut next, b"next").await;
    // The running session is untouched, on its old TLS session.
    assert_echo(&mut running, b"after the reload").await;
    let line = proxy.wait_for("reloaded certificate").await;
    assert!(
        line.contains("subject") && line.contains("not after"),
        "{line}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_failed_reload_keeps_the_old_certificate_and_says_which_file() {
    let dir = temp_dir("sighup-garbage");
    let cert = dir.join("self.pem");
    let (pem, der) = cert_and_key();
    std::fs::write(&cert, &pem).unwrap();
    let proxy = wss_proxy(&cert).await;
    let config = trusting(&[&der]);
    let (mut running, _) = wss(proxy.addr, &config).await;

    replace(&cert, "not a certificate\n");
    proxy.signal(Signal::HUP);
    let line = proxy.wait_for("TLS reload failed").await;
    assert!(line.contains(cert.to_str().unwrap()), "{line}");
    assert!(line.contains("ERROR"), "{line}");

    let (mut next, served) = wss(proxy.addr, &config).await;
    assert_eq!(served, der, "the old certificate is still served");
    assert_echo(&mut next, b"still served").await;
    assert_echo(&mut running, b"still running").await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_certificate_swapped_on_disk_is_picked_up_without_a_signal() {
    // As certbot renews: the configured path is a symlink, pointed at a new file.
    let dir = temp_dir("cert-swap");
    let (old_pem, old_der) = cert_and_key();
    let (new_pem, new_der) = cert_and_key();
    std::fs::write(dir.join("cert1.pem"), &old_pem).unwrap();
    std::fs::write(dir.join("cert2.pem"), &new_pem).unwrap();
    let live = dir.join("live.pem");
    std::os::unix::fs::symlink("cert1.pem", &live).unwrap();
    let proxy = wss_proxy(&live).await;
    let config = trusting(&[&old_der, &new_der]);
    let (mut running, served) = wss(proxy.addr, &config).await;
    assert_eq!(served, old_der);

    let swapped = std::time::Instant::now();
    let tmp = dir.join("live.tmp");
    std::os::unix::fs::symlink("cert2.pem", &tmp).unwrap();
    std::fs::rename(&tmp, &live).unwrap();
    proxy.wait_for("reloaded certificate").await;
    let took = swapped.elapsed();
    assert!(
        took < websockify::CERT_POLL_INTERVAL + Duration::from_secs(1),
        "picked up after {took:?}"
    );
    let (_next, served) = wss(proxy.addr, &config).await;
    assert_eq!(served, new_der);
    assert_echo(&mut running, b"untouched").await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn sighup_reloads_a_read_only_token_file_and_a_failed_reload_keeps_the_old_table() {
    let first = named_target("first").await;
    let second = named_target("second").await;
    let dir = temp_dir("sighup-tokens");
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("t: {first}\n")).unwrap();
    let proxy = LoggedBinary::start(&[
        "--token-plugin",
        "ReadOnlyTokenFile",
        "--token-source",
        tokens.to_str().unwrap(),
        "127.0.0.1:0",
    ])
    .await;
    assert_reaches(proxy.addr, "/?token=t", "first").await;
    let mut running = RawClient::new(TcpStream::connect(proxy.addr).await.unwrap());
    let head = running.request(&upgrade_request("/?token=t", "")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(running.read_data(5).await, b"first");

    replace(&tokens, &format!("t: {second}\n"));
    proxy.signal(Signal::HUP);
    proxy.wait_for("token and auth sources reloaded").await;
    assert_reaches(proxy.addr, "/?token=t", "second").await;
    assert_echo(&mut running, b"on first still").await;

    // A source gone: the reload fails, naming it, and the table loaded last stays.
    std::fs::remove_file(&tokens).unwrap();
    proxy.signal(Signal::HUP);
    let line = proxy.wait_for("token and auth reload failed").await;
    assert!(line.contains(tokens.to_str().unwrap()), "{line}");
    assert_reaches(proxy.addr, "/?token=t", "second").await;
    let _ = std::fs::remove_dir_all(dir);
}
