//! TLS over real sockets: one port for ws:// and wss://, `--cert`/`--key` loading and its
//! start-up errors, `--ssl-only`, `--ssl-version tlsv1_3`, and the TLS handshake timeout.

use websockify_test_support as support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ProtocolVersion, RootCertStore, SupportedProtocolVersion};
use support::{
    bounded, echo_server, masked_frame, self_signed, settings_to, start_proxy, temp_dir,
    upgrade_request, Proxy, RawClient, ACCEPT,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use websockify::Server;
use websockify::{Settings, TlsMinVersion};

/// Short enough for tests, far from the 5 s default so that the tests show it is honoured.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(300);
/// A drop "after the handshake timeout" must come before this (the default is 5 s).
const DROP_DEADLINE: Duration = Duration::from_secs(3);

/// Certificate files for "localhost", written to a fresh directory.
struct Certs {
    /// Certificate chain and key in one PEM file.
    combined: PathBuf,
    /// The certificate alone.
    cert: PathBuf,
    /// The key alone.
    key: PathBuf,
    /// The certificate, for the client's trust store.
    der: Vec<u8>,
}

fn certs() -> Certs {
    let (cert_pem, key_pem, der) = self_signed();
    let dir = temp_dir("tls");
    let combined = dir.join("self.pem");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&combined, format!("{cert_pem}{key_pem}")).unwrap();
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, &key_pem).unwrap();
    Certs {
        combined,
        cert,
        key,
        der,
    }
}

/// Settings for a proxy to `target` with the short handshake timeout and the given files, as
/// `--cert CERT [--key KEY]` would give them.
fn tls_settings(target: SocketAddr, cert: &Path, key: Option<&Path>) -> Settings {
    let mut settings = settings_to(target);
    settings.handshake_timeout = HANDSHAKE_TIMEOUT;
    settings.cert = cert.to_path_buf();
    settings.cert_given = true;
    settings.key = key.map(Path::to_path_buf);
    settings
}

/// A proxy to a fresh echo server serving TLS with the combined certificate file.
async fn tls_proxy(certs: &Certs) -> Proxy {
    start_proxy(tls_settings(echo_server().await, &certs.combined, None)).await
}

/// A client configuration trusting `der`, speaking only `versions`.
fn client_config(der: &[u8], versions: &[&'static SupportedProtocolVersion]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(der.to_vec())).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A client configuration trusting `der`, speaking TLS 1.2 and 1.3.
fn any_version(der: &[u8]) -> Arc<ClientConfig> {
    client_config(der, rustls::ALL_VERSIONS)
}

/// Connects and completes a TLS handshake for "localhost".
async fn tls_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    // Nagle would hold a frame's last record for the proxy's delayed ACK, 40 ms each time.
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").unwrap();
    bounded(
        "TLS handshake",
        TlsConnector::from(config).connect(name, tcp),
    )
    .await
}

/// Reads until the server ends the connection; returns everything it sent before that.
/// A reset or an abrupt TLS end counts as an end.
async fn read_until_dropped<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    bounded("the server to drop the connection", async {
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
}

/// Asserts a WebSocket over `client` echoes a binary frame.
async fn assert_echo<S: AsyncRead + tokio::io::AsyncWrite + Unpin>(client: &mut RawClient<S>) {
    client.send(true, 0x2, b"\x00hello over the wire\xff").await;
    assert_eq!(client.read_data(21).await, b"\x00hello over the wire\xff");
}

/// The start-up error of `Server::new(settings)`; panics if it starts.
fn startup_error(settings: Settings) -> String {
    match Server::new(settings) {
        Ok(_) => panic!("the server should refuse to start"),
        Err(err) => {
            let message = err.to_string();
            assert!(!message.contains('\n'), "not one line: {message:?}");
            assert_eq!(err.code, 1, "{message}");
            // What follows the program's name.
            match message.strip_prefix("websockify: ") {
                Some(rest) => rest.to_owned(),
                None => panic!("not prefixed with the program's name: {message:?}"),
            }
        }
    }
}

#[tokio::test]
async fn tungstenite_client_round_trips_over_wss() {
    let certs = certs();
    let proxy = tls_proxy(&certs).await;
    let tls = tls_connect(proxy.addr, any_version(&certs.der))
        .await
        .unwrap();
    let mut request = format!("wss://localhost:{}/websockify", proxy.addr.port())
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "base64, binary".parse().unwrap());
    let (mut ws, response) = bounded(
        "tungstenite handshake",
        tokio_tungstenite::client_async(request, tls),
    )
    .await
    .expect("handshake");
    assert_eq!(response.status(), 101);
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        "binary"
    );
    for size in [1usize, 126, 70_000, 1 << 20] {
        let payload: Vec<u8> = (0..size).map(|i| (i * 13 % 256) as u8).collect();
        bounded("send", ws.send(Message::binary(payload.clone())))
            .await
            .unwrap();
        let mut echoed = Vec::new();
        while echoed.len() < size {
            match bounded("echo", ws.next()).await {
                Some(Ok(Message::Binary(data))) => echoed.extend_from_slice(&data),
                other => panic!("expected binary data, got {other:?}"),
            }
        }
        assert_eq!(echoed, payload, "{size} bytes");
    }
    bounded("close", ws.close(None)).await.unwrap();
    proxy.stop().await;
}

#[tokio::test]
async fn one_port_serves_ws_and_wss() {
    let certs = certs();
    let proxy = tls_proxy(&certs).await;

    let (mut plain, head) = RawClient::connect(proxy.addr, Some("binary")).await;
    assert!(head.contains(ACCEPT), "{head}");
    assert_echo(&mut plain).await;

    let tls = tls_connect(proxy.addr, any_version(&certs.der))
        .await
        .unwrap();
    let (mut secure, head) = RawClient::upgrade(tls, Some("binary")).await;
    assert!(head.contains(ACCEPT), "{head}");
    assert_echo(&mut secure).await;

    // Both sessions live side by side.
    assert_echo(&mut plain).await;
    assert_echo(&mut secure).await;
    proxy.stop().await;
}

#[tokio::test]
async fn tls_server_offers_http_1_1_over_alpn() {
    let certs = certs();
    let proxy = tls_proxy(&certs).await;
    let mut config = (*any_version(&certs.der)).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tls = tls_connect(proxy.addr, Arc::new(config)).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut client, _) = RawClient::upgrade(tls, None).await;
    assert_echo(&mut client).await;
    proxy.stop().await;
}

#[tokio::test]
async fn key_may_be_given_in_a_separate_key_file() {
    let certs = certs();
    let proxy = start_proxy(tls_settings(
        echo_server().await,
        &certs.cert,
        Some(&certs.key),
    ))
    .await;
    let tls = tls_connect(proxy.addr, any_version(&certs.der))
        .await
        .unwrap();
    let (mut client, _) = RawClient::upgrade(tls, None).await;
    assert_echo(&mut client).await;
    proxy.stop().await;
}

/// A chain root → intermediate → leaf for "localhost": (a file holding the leaf, the
/// intermediate and the leaf's key, in `order`; the root's DER for the client).
fn chain_file(order: &[&str]) -> (PathBuf, Vec<u8>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params
    };
    let root_key = KeyPair::generate().unwrap();
    let root = ca("test root").self_signed(&root_key).unwrap();
    let inter_key = KeyPair::generate().unwrap();
    let inter = ca("test intermediate")
        .signed_by(&inter_key, &root, &root_key)
        .unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &inter, &inter_key)
        .unwrap();
    let pem: String = order
        .iter()
        .map(|part| match *part {
            "leaf" => leaf.pem(),
            "intermediate" => inter.pem(),
            "key" => leaf_key.serialize_pem(),
            other => panic!("unknown part {other}"),
        })
        .collect();
    let path = temp_dir("tls-chain").join("chain.pem");
    std::fs::write(&path, pem).unwrap();
    (path, root.der().to_vec())
}

#[tokio::test]
async fn certificate_chain_and_key_in_one_file_are_all_served() {
    // The client trusts only the root: the handshake needs the intermediate from the file.
    for order in [
        &["leaf", "intermediate", "key"][..],
        &["key", "leaf", "intermediate"][..],
    ] {
        let (path, root) = chain_file(order);
        let proxy = start_proxy(tls_settings(echo_server().await, &path, None)).await;
        let tls = tls_connect(proxy.addr, any_version(&root))
            .await
            .unwrap_or_else(|e| panic!("{order:?}: {e}"));
        let served = tls.get_ref().1.peer_certificates().unwrap().len();
        assert_eq!(served, 2, "{order:?}: leaf and intermediate");
        let (mut client, _) = RawClient::upgrade(tls, None).await;
        assert_echo(&mut client).await;
        proxy.stop().await;
    }
}

#[tokio::test]
async fn frames_pipelined_with_the_upgrade_request_over_tls_are_relayed() {
    let certs = certs();
    let proxy = tls_proxy(&certs).await;
    let tls = tls_connect(proxy.addr, any_version(&certs.der))
        .await
        .unwrap();
    let mut bytes = upgrade_request("/websockify", "").into_bytes();
    bytes.extend(masked_frame(true, 0x2, b"pipelined", [1, 2, 3, 4]));
    let mut client = RawClient::new(tls);
    client.send_raw(&bytes).await;
    let head = client.read_head().await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(client.read_data(9).await, b"pipelined");
    proxy.stop().await;
}

#[tokio::test]
async fn ssl_only_drops_plain_clients() {
    let certs = certs();
    let mut settings = tls_settings(echo_server().await, &certs.combined, None);
    settings.ssl_only = true;
    let proxy = start_proxy(settings).await;

    let began = Instant::now();
    let mut plain = TcpStream::connect(proxy.addr).await.unwrap();
    plain
        .write_all(upgrade_request("/websockify", "").as_bytes())
        .await
        .unwrap();
    let got = read_until_dropped(&mut plain).await;
    assert!(
        got.is_empty(),
        "a plain client must get no HTTP response, got {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        began.elapsed() < DROP_DEADLINE,
        "dropped at once, not after a timeout"
    );

    // TLS clients are still served.
    let tls = tls_connect(proxy.addr, any_version(&certs.der))
        .await
        .unwrap();
    let (mut client, _) = RawClient::upgrade(tls, None).await;
    assert_echo(&mut client).await;
    proxy.stop().await;
}

/// `--ssl-only` refuses by the first byte, so it must hold whatever a plain client opens with:
/// an upgrade, a web page (with `--web`), the Flash policy request (answered without
/// `--ssl-only`), a PROXY header from an untrusted peer, a byte no protocol starts with.
#[tokio::test]
async fn ssl_only_refuses_plain_clients_whatever_their_first_bytes() {
    let certs = certs();
    let mut settings = tls_settings(echo_server().await, &certs.combined, None);
    settings.ssl_only = true;
    let web = temp_dir("tls-sslonly-web");
    std::fs::write(web.join("index.html"), "page").unwrap();
    settings.web = Some(web);
    let proxy = start_proxy(settings).await;
    let openings: [(&str, Vec<u8>); 5] = [
        (
            "an upgrade",
            upgrade_request("/websockify", "").into_bytes(),
        ),
        (
            "a web page",
            b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "the Flash policy request",
            b"<policy-file-request/>\0".to_vec(),
        ),
        (
            "a PROXY header",
            b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\nGET / HTTP/1.1\r\n\r\n".to_vec(),
        ),
        ("a stray byte", b"\x00\x01\x02".to_vec()),
    ];
    for (what, opening) in openings {
        let began = Instant::now();
        let mut plain = TcpStream::connect(proxy.addr).await.unwrap();
        plain.write_all(&opening).await.unwrap();
        let got = read_until_dropped(&mut plain).await;
        assert!(
            got.is_empty(),
            "{what}: a plain client must get nothing, got {:?}",
            String::from_utf8_lossy(&got)
        );
        assert!(began.elapsed() < DROP_DEADLINE, "{what}: dropped at once");
    }
    // TLS clients are still served.
    let tls = tls_connect(proxy.addr, any_version(&certs.der))
        .await
        .unwrap();
    let (mut client, _) = RawClient::upgrade(tls, None).await;
    assert_echo(&mut client).await;
    proxy.stop().await;
}

#[tokio::test]
async fn ssl_only_without_a_certificate_fails_at_start_naming_cert_and_the_file() {
    let missing = temp_dir("tls-missing").join("nowhere.pem");
    let mut settings = tls_settings(support::closed_port().await, &missing, None);
    settings.ssl_only = true;
    let message = startup_error(settings);
    assert!(message.contains("--cert"), "{message}");
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
}

#[tokio::test]
async fn garbage_certificate_file_is_a_start_up_error() {
    let certs = certs();
    let dir = temp_dir("tls-garbage");
    let (_, key_pem, _) = self_signed();
    let garbage: [(&str, String); 5] = [
        ("not-pem.pem", "this is not a certificate\n".into()),
        ("empty.pem", String::new()),
        (
            "bad-base64.pem",
            "-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n".into(),
        ),
        (
            "key-only.pem",
            key_pem, // a key but no certificate
        ),
        (
            // Well-formed PEM and base64, but the DER inside is not a certificate.
            "random-der.pem",
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                base64::engine::general_purpose::STANDARD.encode([0x5au8; 300])
            ),
        ),
    ];
    for (name, content) in garbage {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        for ssl_only in [false, true] {
            let mut settings = tls_settings(support::closed_port().await, &path, Some(&certs.key));
            settings.ssl_only = ssl_only;
            let message = startup_error(settings);
            assert!(message.contains("--cert"), "{name}: {message}");
            assert!(
                message.contains(&path.display().to_string()),
                "{name}: {message}"
            );
        }
    }
}

#[tokio::test]
async fn certificate_without_a_key_is_a_start_up_error() {
    let certs = certs();
    // The certificate file holds no key and no --key is given.
    let message = startup_error(tls_settings(
        support::closed_port().await,
        &certs.cert,
        None,
    ));
    assert!(message.contains("--cert"), "{message}");
    assert!(
        message.contains(&certs.cert.display().to_string()),
        "{message}"
    );
    assert!(message.contains("private key"), "{message}");

    // --key names a file that does not exist.
    let missing = temp_dir("tls-nokey").join("missing-key.pem");
    let message = startup_error(tls_settings(
        support::closed_port().await,
        &certs.cert,
        Some(&missing),
    ));
    assert!(message.contains("--key"), "{message}");
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
}

#[tokio::test]
async fn a_cert_named_by_the_user_that_is_missing_is_a_start_up_error_naming_it() {
    let missing = temp_dir("tls-missing").join("mine.pem");
    for ssl_only in [false, true] {
        let mut settings = tls_settings(support::closed_port().await, &missing, None);
        settings.ssl_only = ssl_only;
        let message = startup_error(settings);
        assert_eq!(
            message,
            format!("--cert {}: no such file", missing.display()),
            "ssl_only {ssl_only}"
        );
    }
}

#[tokio::test]
async fn key_without_a_certificate_is_a_start_up_error_naming_the_key() {
    let certs = certs();
    // --key given, no --cert and no default self.pem.
    let mut settings = tls_settings(
        support::closed_port().await,
        &temp_dir("tls-keyonly").join("self.pem"),
        Some(&certs.key),
    );
    settings.cert_given = false;
    let message = startup_error(settings);
    assert!(
        message.starts_with(&format!("--key {}: ", certs.key.display())),
        "{message}"
    );
    assert!(message.contains("--cert FILE"), "{message}");
}

#[tokio::test]
async fn ssl_only_without_any_certificate_is_a_start_up_error_pointing_at_cert() {
    let mut settings = tls_settings(
        support::closed_port().await,
        &temp_dir("tls-sslonly").join("self.pem"),
        None,
    );
    settings.cert_given = false;
    settings.ssl_only = true;
    let message = startup_error(settings);
    assert!(message.starts_with("--ssl-only: "), "{message}");
    assert!(message.contains("--cert FILE"), "{message}");
}

#[tokio::test]
async fn key_that_does_not_match_the_certificate_is_a_start_up_error() {
    let certs = certs();
    let other = self::certs();
    let message = startup_error(tls_settings(
        support::closed_port().await,
        &certs.cert,
        Some(&other.key),
    ));
    assert!(message.contains("--cert"), "{message}");
    assert!(
        message.contains(&certs.cert.display().to_string()),
        "{message}"
    );
}

#[tokio::test]
async fn without_a_certificate_plain_works_and_tls_clients_are_dropped() {
    let certs = certs(); // only for a client trust store; the server has no certificate
                         // No --cert, and no default self.pem (here: in a fresh directory).
    let mut settings = tls_settings(
        echo_server().await,
        &temp_dir("tls-none").join("self.pem"),
        None,
    );
    settings.cert_given = false;
    let proxy = start_proxy(settings).await;

    let (mut plain, _) = RawClient::connect(proxy.addr, None).await;
    assert_echo(&mut plain).await;

    let began = Instant::now();
    let result = tls_connect(proxy.addr, any_version(&certs.der)).await;
    assert!(
        result.is_err(),
        "a TLS client must not be served without a certificate"
    );
    assert!(
        began.elapsed() < DROP_DEADLINE,
        "dropped at once, not after a timeout"
    );

    // Plain clients are still served afterwards.
    let (mut plain, _) = RawClient::connect(proxy.addr, None).await;
    assert_echo(&mut plain).await;
    proxy.stop().await;
}

#[tokio::test]
async fn tls13_minimum_refuses_a_tls12_only_client() {
    let certs = certs();
    let mut settings = tls_settings(echo_server().await, &certs.combined, None);
    settings.ssl_min_version = TlsMinVersion::Tls13;
    let proxy = start_proxy(settings).await;

    let tls12 = client_config(&certs.der, &[&rustls::version::TLS12]);
    let result = tls_connect(proxy.addr, tls12).await;
    assert!(result.is_err(), "a TLS 1.2 client must be refused");

    let tls13 = client_config(&certs.der, &[&rustls::version::TLS13]);
    let tls = tls_connect(proxy.addr, tls13).await.unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );
    let (mut client, _) = RawClient::upgrade(tls, None).await;
    assert_echo(&mut client).await;
    proxy.stop().await;
}

#[tokio::test]
async fn default_minimum_accepts_tls12_and_tls13_clients() {
    let certs = certs();
    let proxy = tls_proxy(&certs).await;
    for (version, expected) in [
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
    ] {
        let tls = tls_connect(proxy.addr, client_config(&certs.der, &[version]))
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.protocol_version(), Some(expected));
        let (mut client, _) = RawClient::upgrade(tls, None).await;
        assert_echo(&mut client).await;
    }
    // TLS 1.2 as the explicit minimum behaves the same.
    let mut settings = tls_settings(echo_server().await, &certs.combined, None);
    settings.ssl_min_version = TlsMinVersion::Tls12;
    let proxy12 = start_proxy(settings).await;
    let tls = tls_connect(
        proxy12.addr,
        client_config(&certs.der, &[&rustls::version::TLS12]),
    )
    .await
    .unwrap();
    let (mut client, _) = RawClient::upgrade(tls, None).await;
    assert_echo(&mut client).await;
    proxy12.stop().await;
    proxy.stop().await;
}

#[tokio::test]
async fn tls_client_that_stalls_mid_handshake_is_dropped_after_the_handshake_timeout() {
    let certs = certs();
    let proxy = tls_proxy(&certs).await;
    let began = Instant::now();
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    // A handshake record header announcing 512 bytes, and only a few of them.
    stream
        .write_all(&[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ])
        .await
        .unwrap();
    let got = read_until_dropped(&mut stream).await;
    let waited = began.elapsed();
    assert!(got.is_empty(), "nothing expected, got {got:?}");
    assert!(waited >= HANDSHAKE_TIMEOUT, "dropped too early: {waited:?}");
    assert!(waited < DROP_DEADLINE, "dropped too late: {waited:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn tls_client_that_sends_no_request_is_dropped_after_the_handshake_timeout() {
    let certs = certs();
    let proxy = tls_proxy(&certs).await;
    let began = Instant::now();
    let mut tls = tls_connect(proxy.addr, any_version(&certs.der))
        .await
        .unwrap();
    let got = read_until_dropped(&mut tls).await;
    let waited = began.elapsed();
    assert!(
        got.is_empty(),
        "nothing expected, got {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(waited >= HANDSHAKE_TIMEOUT, "dropped too early: {waited:?}");
    assert!(waited < DROP_DEADLINE, "dropped too late: {waited:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn plain_http_errors_are_answered_over_tls_too() {
    let certs = certs();
    let proxy = tls_proxy(&certs).await;
    let mut tls = tls_connect(proxy.addr, any_version(&certs.der))
        .await
        .unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut client = RawClient::new(tls);
    let head = client.read_head().await;
    assert!(head.starts_with("HTTP/1.1 405 "), "{head}");
    proxy.stop().await;
}

/// `key_pem` (a PKCS#8 PEM key) encrypted with `password` as `openssl pkcs8 -topk8 -v2
/// aes-256-cbc` does (PBES2, PBKDF2-SHA256, AES-256-CBC), as PEM.
fn encrypt_key(key_pem: &str, password: &str) -> String {
    use pkcs8::der::pem::LineEnding;
    use pkcs8::der::Decode;
    let (_, der) = pkcs8::der::SecretDocument::from_pem(key_pem).unwrap();
    let info = pkcs8::PrivateKeyInfo::from_der(der.as_bytes()).unwrap();
    let params = pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(
        2048,
        b"salt for a test",
        &[7; 16],
    )
    .unwrap();
    let encrypted = info.encrypt_with_params(params, password).unwrap();
    encrypted
        .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
        .unwrap()
        .to_string()
}

/// Certificate files for "localhost" whose key is encrypted with `password`: (the key file,
/// the certificate and the encrypted key in one file, the certificate alone, its DER).
fn encrypted_certs(password: &str) -> (PathBuf, PathBuf, PathBuf, Vec<u8>) {
    let (cert_pem, key_pem, der) = self_signed();
    let encrypted = encrypt_key(&key_pem, password);
    assert!(encrypted.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    let dir = temp_dir("tls-encrypted");
    let key = dir.join("key.pem");
    let combined = dir.join("combined.pem");
    let cert = dir.join("cert.pem");
    std::fs::write(&key, &encrypted).unwrap();
    std::fs::write(&combined, format!("{cert_pem}{encrypted}")).unwrap();
    std::fs::write(&cert, &cert_pem).unwrap();
    (key, combined, cert, der)
}

#[tokio::test]
async fn an_encrypted_key_is_decrypted_with_key_password() {
    let (key, combined, cert, der) = encrypted_certs("correct horse");
    // In a separate --key file, and in the certificate file.
    for (cert_file, key_file) in [(&cert, Some(key.as_path())), (&combined, None)] {
        let mut settings = tls_settings(echo_server().await, cert_file, key_file);
        settings.key_password = Some("correct horse".into());
        let proxy = start_proxy(settings).await;
        let tls = tls_connect(proxy.addr, any_version(&der)).await.unwrap();
        let (mut client, _) = RawClient::upgrade(tls, None).await;
        assert_echo(&mut client).await;
        proxy.stop().await;
    }
}

#[tokio::test]
async fn a_wrong_key_password_is_a_start_up_error_naming_the_option_and_the_file() {
    let (key, combined, cert, _) = encrypted_certs("correct horse");
    for (cert_file, key_file, file) in [
        (&cert, Some(key.as_path()), &key),
        (&combined, None, &combined),
    ] {
        let mut settings = tls_settings(support::closed_port().await, cert_file, key_file);
        settings.key_password = Some("battery staple".into());
        let message = startup_error(settings);
        assert_eq!(
            message,
            format!(
                "--key-password: cannot decrypt the private key in {} (wrong password?)",
                file.display()
            )
        );
    }
}

#[tokio::test]
async fn an_encrypted_key_without_key_password_is_a_start_up_error_asking_for_it() {
    let (key, _, cert, _) = encrypted_certs("correct horse");
    let message = startup_error(tls_settings(
        support::closed_port().await,
        &cert,
        Some(&key),
    ));
    assert!(
        message.starts_with(&format!("--key {}: ", key.display())),
        "{message}"
    );
    assert!(message.contains("--key-password"), "{message}");
}

#[tokio::test]
async fn a_legacy_encrypted_pem_key_is_a_start_up_error_saying_how_to_convert_it() {
    let certs = certs();
    let legacy = temp_dir("tls-legacy").join("legacy.pem");
    std::fs::write(
        &legacy,
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,\
         00112233445566778899AABBCCDDEEFF\n\nAAAA\n-----END RSA PRIVATE KEY-----\n",
    )
    .unwrap();
    let mut settings = tls_settings(support::closed_port().await, &certs.cert, Some(&legacy));
    settings.key_password = Some("pw".into());
    let message = startup_error(settings);
    assert!(
        message.starts_with(&format!("--key {}: ", legacy.display())),
        "{message}"
    );
    assert!(message.contains("openssl pkcs8 -topk8"), "{message}");
}

#[tokio::test]
async fn key_password_with_a_plain_key_still_serves() {
    // As the reference (OpenSSL ignores it): the password is not needed, a warning says so.
    let certs = certs();
    let mut settings = tls_settings(echo_server().await, &certs.combined, None);
    settings.key_password = Some("unused".into());
    let proxy = start_proxy(settings).await;
    let tls = tls_connect(proxy.addr, any_version(&certs.der))
        .await
        .unwrap();
    let (mut client, _) = RawClient::upgrade(tls, None).await;
    assert_echo(&mut client).await;
    proxy.stop().await;
}

/// A CA for client certificates: its PEM file and what signs with it.
struct ClientCa {
    file: PathBuf,
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

fn client_ca(name: &str) -> ClientCa {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let file = temp_dir("tls-client-ca").join("ca.pem");
    std::fs::write(&file, cert.pem()).unwrap();
    ClientCa { file, cert, key }
}

/// A client configuration trusting the server's `der` and presenting a certificate for `cn`
/// issued by `ca`.
fn client_with_cert(
    der: &[u8],
    versions: &[&'static SupportedProtocolVersion],
    ca: &ClientCa,
    cn: &str,
) -> Arc<ClientConfig> {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(der.to_vec())).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    Arc::new(config)
}

/// A proxy to an echo server requiring client certificates of `ca`.
async fn verifying_proxy(certs: &Certs, ca: &ClientCa) -> Proxy {
    let mut settings = tls_settings(echo_server().await, &certs.combined, None);
    settings.verify_client = true;
    settings.cafile = Some(ca.file.clone());
    start_proxy(settings).await
}

/// Whether a WebSocket over TLS with `config` is refused: the handshake fails, or (TLS 1.3,
/// where the client finishes first) the server ends the connection without answering.
async fn wss_is_refused(addr: SocketAddr, config: Arc<ClientConfig>) -> bool {
    let Ok(mut tls) = tls_connect(addr, config).await else {
        return true;
    };
    if tls
        .write_all(upgrade_request("/websockify", "").as_bytes())
        .await
        .is_err()
    {
        return true;
    }
    read_until_dropped(&mut tls).await.is_empty()
}

#[tokio::test]
async fn verify_client_serves_a_client_with_a_certificate_of_the_cafile() {
    let certs = certs();
    let ca = client_ca("client CA");
    let proxy = verifying_proxy(&certs, &ca).await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let config = client_with_cert(&certs.der, &[version], &ca, "alice");
        let tls = tls_connect(proxy.addr, config).await.unwrap();
        let (mut client, head) = RawClient::upgrade(tls, None).await;
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert_echo(&mut client).await;
    }
    proxy.stop().await;
}

#[tokio::test]
async fn verify_client_refuses_clients_without_a_certificate_or_with_one_of_another_ca() {
    let certs = certs();
    let ca = client_ca("client CA");
    let other = client_ca("some other CA");
    let proxy = verifying_proxy(&certs, &ca).await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let none = client_config(&certs.der, &[version]);
        assert!(
            wss_is_refused(proxy.addr, none).await,
            "{version:?}: no certificate"
        );
        let foreign = client_with_cert(&certs.der, &[version], &other, "mallory");
        assert!(
            wss_is_refused(proxy.addr, foreign).await,
            "{version:?}: certificate of another CA"
        );
    }
    // A good client is still served afterwards.
    let good = client_with_cert(&certs.der, rustls::ALL_VERSIONS, &ca, "alice");
    let tls = tls_connect(proxy.addr, good).await.unwrap();
    let (mut client, _) = RawClient::upgrade(tls, None).await;
    assert_echo(&mut client).await;
    proxy.stop().await;
}

/// `--verify-client` without `--ssl-only` still serves plain ws:// clients, who show no
/// certificate: a start-up warning says so, and only then (the binary's log; its start-up
/// lines come after the certificate is loaded, so a warning would be in by then).
#[tokio::test]
async fn verify_client_without_ssl_only_warns_that_plain_clients_are_still_served() {
    let certs = certs();
    let ca = client_ca("client CA");
    let target = echo_server().await.to_string();
    for ssl_only in [false, true] {
        let mut args = vec![
            "--cert",
            certs.combined.to_str().unwrap(),
            "--verify-client",
            "--cafile",
            ca.file.to_str().unwrap(),
        ];
        if ssl_only {
            args.push("--ssl-only");
        }
        args.extend(["127.0.0.1:0", target.as_str()]);
        let server = support::LoggedBinary::start(&args).await;
        assert_eq!(
            server.count("plain ws:// clients are still served"),
            usize::from(!ssl_only),
            "--ssl-only {ssl_only}"
        );
    }
}

#[tokio::test]
async fn cafile_without_verify_client_asks_no_client_for_a_certificate() {
    // As the reference: --cafile alone changes nothing (a start-up warning says so).
    let certs = certs();
    let ca = client_ca("client CA");
    let mut settings = tls_settings(echo_server().await, &certs.combined, None);
    settings.cafile = Some(ca.file.clone());
    let proxy = start_proxy(settings).await;
    let tls = tls_connect(proxy.addr, any_version(&certs.der))
        .await
        .unwrap();
    let (mut client, _) = RawClient::upgrade(tls, None).await;
    assert_echo(&mut client).await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_bad_cafile_is_a_start_up_error_naming_it() {
    let certs = certs();
    let dir = temp_dir("tls-bad-cafile");
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    for cafile in [dir.join("missing.pem"), empty, certs.key.clone()] {
        let mut settings = tls_settings(support::closed_port().await, &certs.combined, None);
        settings.verify_client = true;
        settings.cafile = Some(cafile.clone());
        let message = startup_error(settings);
        assert!(
            message.starts_with(&format!("--cafile {}: ", cafile.display())),
            "{message}"
        );
    }
}

#[tokio::test]
async fn verify_client_without_a_certificate_to_serve_is_a_start_up_error() {
    // No TLS would mean nobody is asked for a certificate: refused, not served unverified.
    let ca = client_ca("client CA");
    let mut settings = tls_settings(
        support::closed_port().await,
        &temp_dir("tls-verify-nocert").join("self.pem"),
        None,
    );
    settings.cert_given = false;
    settings.verify_client = true;
    settings.cafile = Some(ca.file.clone());
    let message = startup_error(settings);
    assert!(message.starts_with("--verify-client: "), "{message}");
    assert!(message.contains("--cert FILE"), "{message}");
}

/// A client trusting `der` that offers only `suites` (with the versions they need).
fn client_with_suites(der: &[u8], suites: &[rustls::CipherSuite]) -> Arc<ClientConfig> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .retain(|s| suites.contains(&s.suite()));
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(der.to_vec())).unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

#[tokio::test]
async fn ssl_ciphers_restricts_the_suites_by_openssl_or_iana_names() {
    use rustls::CipherSuite as C;
    // rcgen's default key is ECDSA P-256: the ECDSA suites apply.
    let certs = certs();
    for list in [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    ] {
        let mut settings = tls_settings(echo_server().await, &certs.combined, None);
        settings.ssl_ciphers = Some(list.into());
        let proxy = start_proxy(settings).await;
        // A client offering the named suite gets it.
        let tls = tls_connect(
            proxy.addr,
            client_with_suites(&certs.der, &[C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]),
        )
        .await
        .unwrap();
        assert_eq!(
            tls.get_ref().1.negotiated_cipher_suite().unwrap().suite(),
            C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            "{list}"
        );
        let (mut client, _) = RawClient::upgrade(tls, None).await;
        assert_echo(&mut client).await;
        // A TLS 1.2 client offering only other suites is refused.
        let other = client_with_suites(
            &certs.der,
            &[
                C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            ],
        );
        assert!(tls_connect(proxy.addr, other).await.is_err(), "{list}");
        // TLS 1.3 suites stay on when only TLS 1.2 names are given (as OpenSSL).
        let tls13 = client_with_suites(&certs.der, &[C::TLS13_AES_256_GCM_SHA384]);
        let tls = tls_connect(proxy.addr, tls13).await.unwrap();
        assert_eq!(
            tls.get_ref().1.negotiated_cipher_suite().unwrap().suite(),
            C::TLS13_AES_256_GCM_SHA384
        );
        proxy.stop().await;
    }

    // Naming a TLS 1.3 suite restricts TLS 1.3 to it.
    let mut settings = tls_settings(echo_server().await, &certs.combined, None);
    settings.ssl_ciphers =
        Some("TLS_CHACHA20_POLY1305_SHA256:ECDHE-ECDSA-CHACHA20-POLY1305".into());
    let proxy = start_proxy(settings).await;
    let tls = tls_connect(
        proxy.addr,
        client_with_suites(&certs.der, &[C::TLS13_CHACHA20_POLY1305_SHA256]),
    )
    .await
    .unwrap();
    assert_eq!(
        tls.get_ref().1.negotiated_cipher_suite().unwrap().suite(),
        C::TLS13_CHACHA20_POLY1305_SHA256
    );
    let excluded = client_with_suites(&certs.der, &[C::TLS13_AES_128_GCM_SHA256]);
    assert!(tls_connect(proxy.addr, excluded).await.is_err());
    proxy.stop().await;
}

#[tokio::test]
async fn ssl_ciphers_that_rustls_cannot_do_or_does_not_know_are_start_up_errors() {
    let certs = certs();
    for (list, name, why) in [
        ("ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES128-SHA", "CBC"),
        (
            "ECDHE-RSA-AES128-GCM-SHA256:RC4-SHA",
            "RC4-SHA",
            "does not implement",
        ),
        (
            "DHE-RSA-AES256-GCM-SHA384",
            "DHE-RSA-AES256-GCM-SHA384",
            "DHE",
        ),
        ("AES128-GCM-SHA256", "AES128-GCM-SHA256", "static RSA"),
        ("HIGH:!aNULL", "HIGH", "keywords"),
        ("NO-SUCH-CIPHER", "NO-SUCH-CIPHER", "unknown"),
    ] {
        let mut settings = tls_settings(support::closed_port().await, &certs.combined, None);
        settings.ssl_ciphers = Some(list.into());
        let message = startup_error(settings);
        assert!(
            message.starts_with(&format!("--ssl-ciphers: {name}: ")),
            "{list}: {message}"
        );
        assert!(message.contains(why), "{list}: {message}");
        assert!(
            message.contains("ECDHE-RSA-AES128-GCM-SHA256"),
            "{list}: lists what rustls offers: {message}"
        );
    }
}

/// ClientCertCNAuth end to end: the CN of the certificate verified in the handshake decides;
/// a certificate of the trusted CA with another CN is refused before the 101.
#[tokio::test]
async fn client_cert_cn_auth_lets_in_only_the_listed_cns_of_verified_certificates() {
    let certs = certs();
    let ca = client_ca("client CA");
    let mut settings = tls_settings(echo_server().await, &certs.combined, None);
    settings.verify_client = true;
    settings.cafile = Some(ca.file.clone());
    settings.auth = Some(websockify::AuthConfig {
        plugin: "ClientCertCNAuth".into(),
        source: Some("alice carol".into()),
    });
    let proxy = start_proxy(settings).await;
    for cn in ["alice", "carol"] {
        let config = client_with_cert(&certs.der, rustls::ALL_VERSIONS, &ca, cn);
        let tls = tls_connect(proxy.addr, config).await.unwrap();
        let (mut client, head) = RawClient::upgrade(tls, None).await;
        assert!(head.starts_with("HTTP/1.1 101 "), "{cn}: {head}");
        assert_echo(&mut client).await;
    }
    // Verified by the CA, but not a listed CN; a header claiming a listed one changes nothing.
    let config = client_with_cert(&certs.der, rustls::ALL_VERSIONS, &ca, "mallory");
    let mut tls = tls_connect(proxy.addr, config).await.unwrap();
    tls.write_all(upgrade_request("/", "SSL_CLIENT_S_DN_CN: alice\r\n").as_bytes())
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&read_until_dropped(&mut tls).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 403 "), "{answer}");
    proxy.stop().await;
}

/// A returning client (noVNC reconnecting) resumes its TLS session instead of paying a full
/// handshake, with TLS 1.3 and 1.2, and still does after hundreds of other clients: the
/// server hands out tickets it can read back, rather than keeping each session in a table of
/// a few hundred (rustls' default cache) that newer clients push it out of.
#[tokio::test]
async fn a_returning_client_resumes_its_tls_session_even_after_many_others() {
    use rustls::HandshakeKind;
    let certs = certs();
    let proxy = tls_proxy(&certs).await;
    // One session over `config`; says how its handshake went. The echo makes sure the client
    // has read what follows the handshake (TLS 1.3 sends its tickets then).
    async fn session(addr: SocketAddr, config: Arc<ClientConfig>) -> Option<HandshakeKind> {
        let tls = tls_connect(addr, config).await.unwrap();
        let kind = tls.get_ref().1.handshake_kind();
        let (mut client, _) = RawClient::upgrade(tls, None).await;
        assert_echo(&mut client).await;
        client.send(true, 0x8, &[0x03, 0xE8]).await;
        client.read_close().await;
        kind
    }
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let returning = client_config(&certs.der, &[version]);
        let first = session(proxy.addr, returning.clone()).await;
        assert_eq!(first, Some(HandshakeKind::Full), "{version:?}");
        assert_eq!(
            session(proxy.addr, returning.clone()).await,
            Some(HandshakeKind::Resumed),
            "{version:?}: the second visit"
        );
        // 300 other clients, each with its own session, more than a 256-entry table holds.
        for _ in 0..300 {
            let other = client_config(&certs.der, &[version]);
            let tls = tls_connect(proxy.addr, other).await.unwrap();
            let (mut client, _) = RawClient::upgrade(tls, None).await;
            assert_echo(&mut client).await;
        }
        assert_eq!(
            session(proxy.addr, returning).await,
            Some(HandshakeKind::Resumed),
            "{version:?}: after 300 other clients"
        );
    }
    proxy.stop().await;
}

/// A client's session store that counts the TLS 1.3 tickets it is given (stored as rustls'
/// own in-memory store does).
#[derive(Debug)]
struct CountingStore {
    inner: rustls::client::ClientSessionMemoryCache,
    tickets: std::sync::atomic::AtomicUsize,
}

impl rustls::client::ClientSessionStore for CountingStore {
    fn set_kx_hint(&self, name: ServerName<'static>, group: rustls::NamedGroup) {
        self.inner.set_kx_hint(name, group)
    }
    fn kx_hint(&self, name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(name)
    }
    fn set_tls12_session(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(name, value)
    }
    fn tls12_session(
        &self,
        name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(name)
    }
    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.inner.remove_tls12_session(name)
    }
    fn insert_tls13_ticket(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.tickets
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.insert_tls13_ticket(name, value)
    }
    fn take_tls13_ticket(
        &self,
        name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(name)
    }
}

/// TLS 1.3: each handshake, full or resumed, hands the client exactly one ticket (rustls would
/// send 2, each a key derivation, a seal and a record more per handshake), and one is enough:
/// a client that keeps coming back resumes every time with the ticket of its last visit.
#[tokio::test]
async fn each_tls13_handshake_sends_one_ticket_and_a_returning_client_always_resumes() {
    use rustls::HandshakeKind;
    use std::sync::atomic::Ordering;
    let certs = certs();
    let proxy = tls_proxy(&certs).await;
    let store = Arc::new(CountingStore {
        inner: rustls::client::ClientSessionMemoryCache::new(16),
        tickets: Default::default(),
    });
    let mut config = (*client_config(&certs.der, &[&rustls::version::TLS13])).clone();
    config.resumption = rustls::client::Resumption::store(store.clone());
    let config = Arc::new(config);
    for visit in 0..4 {
        let tls = tls_connect(proxy.addr, config.clone()).await.unwrap();
        let kind = tls.get_ref().1.handshake_kind();
        let expected = if visit == 0 {
            HandshakeKind::Full
        } else {
            HandshakeKind::Resumed
        };
        assert_eq!(kind, Some(expected), "visit {visit}");
        // The tickets come after the handshake: the echo and the close make sure the client
        // has read all of them.
        let (mut client, _) = RawClient::upgrade(tls, None).await;
        assert_echo(&mut client).await;
        client.send(true, 0x8, &[0x03, 0xE8]).await;
        client.read_close().await;
        assert_eq!(
            store.tickets.load(Ordering::SeqCst),
            visit + 1,
            "tickets received after visit {visit}"
        );
    }
    proxy.stop().await;
}

/// Garbage on the socket after a TLS handshake (a record that does not decrypt, mid-session)
/// ends that session with an error and a TLS alert, and the server goes on serving others,
/// over TLS 1.2 and 1.3.
#[tokio::test]
async fn garbage_after_the_handshake_ends_that_session_and_others_are_served() {
    let certs = certs();
    let proxy = tls_proxy(&certs).await;
    for versions in [&[&rustls::version::TLS13], &[&rustls::version::TLS12]] {
        let config = client_config(&certs.der, versions);
        let tls = tls_connect(proxy.addr, config.clone()).await.unwrap();
        let (mut client, _) = RawClient::upgrade(tls, Some("binary")).await;
        assert_echo(&mut client).await;
        let (mut tcp, _) = client.stream.into_inner();
        let mut garbage = vec![0x17, 0x03, 0x03, 0x00, 0x40];
        garbage.extend_from_slice(&[0xA5; 0x40]);
        tcp.write_all(&garbage).await.unwrap();
        let answer = read_until_dropped(&mut tcp).await;
        // An alert record (21), encrypted under TLS 1.3 as application data (23).
        assert!(
            matches!(answer.first(), Some(21 | 23)),
            "{versions:?}: {answer:?}"
        );
        let tls = tls_connect(proxy.addr, config).await.unwrap();
        let (mut other, _) = RawClient::upgrade(tls, Some("binary")).await;
        assert_echo(&mut other).await;
    }
}
