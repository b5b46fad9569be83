//! `--ssl-target`: the target spoken to over TLS (a real tokio-rustls echo server here), its
//! certificate verified for the target's host against `--target-cafile` (or the system's CAs),
//! `--target-insecure`, and a failed target handshake answered 502 before any 101.

use websockify_test_support as support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use support::{bounded, echo_server, start_proxy, temp_dir, upgrade_request, RawClient};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use websockify::{Listen, Server, Settings, TargetSpec};

/// A private CA: its PEM file, and what signs with it.
struct Ca {
    file: PathBuf,
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let file = temp_dir("tls-target-ca").join("ca.pem");
    std::fs::write(&file, cert.pem()).unwrap();
    Ca { file, cert, key }
}

/// A TLS echo server on 127.0.0.1 with a certificate for `names` issued by `ca`; records the
/// server name (SNI) each client asked for.
async fn tls_echo_server(ca: &Ca, names: &[&str]) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let names_seen = Arc::new(Mutex::new(Vec::new()));
    let seen = names_seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Some(name) = tls.get_ref().1.server_name() {
                    seen.lock().unwrap().push(name.to_owned());
                }
                let (mut r, mut w) = tokio::io::split(tls);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, names_seen)
}

/// Settings for a plain proxy to `host:port` of `target` with `--ssl-target`.
fn ssl_target_settings(host: &str, target: SocketAddr) -> Settings {
    let mut settings = Settings::new(
        Listen::Tcp {
            host: "127.0.0.1".into(),
            port: 0,
        },
        TargetSpec::Tcp {
            host: host.into(),
            port: target.port(),
        },
    );
    // No certificate of our own: the clients here are plain.
    settings.cert = temp_dir("tls-target-nocert").join("self.pem");
    settings.ssl_target = true;
    settings
}

/// The answer to an upgrade request (its head).
async fn upgrade_answer(proxy: SocketAddr) -> (RawClient<TcpStream>, String) {
    let stream = TcpStream::connect(proxy).await.unwrap();
    let mut client = RawClient::new(stream);
    let head = client.request(&upgrade_request("/websockify", "")).await;
    (client, head)
}

async fn assert_echo(client: &mut RawClient<TcpStream>) {
    client.send(true, 0x2, b"through TLS to the target").await;
    assert_eq!(client.read_data(25).await, b"through TLS to the target");
}

#[tokio::test]
async fn ssl_target_relays_over_tls_trusting_target_cafile_with_the_host_as_sni() {
    let ca = ca("target CA");
    let (target, sni) = tls_echo_server(&ca, &["localhost"]).await;
    let mut settings = ssl_target_settings("localhost", target);
    settings.target_cafile = Some(ca.file.clone());
    let proxy = start_proxy(settings).await;
    let (mut client, head) = upgrade_answer(proxy.addr).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_echo(&mut client).await;
    assert_eq!(*sni.lock().unwrap(), vec!["localhost".to_owned()]);
    proxy.stop().await;
}

#[tokio::test]
async fn an_untrusted_target_certificate_is_a_502_before_the_upgrade() {
    let ca = ca("target CA");
    let other = self::ca("some other CA");
    let (target, _) = tls_echo_server(&ca, &["localhost"]).await;
    let mut settings = ssl_target_settings("localhost", target);
    settings.target_cafile = Some(other.file.clone());
    let proxy = start_proxy(settings).await;
    let (_, head) = upgrade_answer(proxy.addr).await;
    assert!(head.starts_with("HTTP/1.1 502 "), "{head}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_target_certificate_for_another_name_is_a_502() {
    // The certificate names "localhost"; the target is reached as 127.0.0.1.
    let ca = ca("target CA");
    let (target, _) = tls_echo_server(&ca, &["localhost"]).await;
    let mut settings = ssl_target_settings("127.0.0.1", target);
    settings.target_cafile = Some(ca.file.clone());
    let proxy = start_proxy(settings).await;
    let (_, head) = upgrade_answer(proxy.addr).await;
    assert!(head.starts_with("HTTP/1.1 502 "), "{head}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_target_that_does_not_speak_tls_is_a_502() {
    let ca = ca("target CA");
    let target = echo_server().await; // echoes our ClientHello back: not TLS
    let mut settings = ssl_target_settings("127.0.0.1", target);
    settings.target_cafile = Some(ca.file.clone());
    let proxy = start_proxy(settings).await;
    let (_, head) = bounded("the 502", upgrade_answer(proxy.addr)).await;
    assert!(head.starts_with("HTTP/1.1 502 "), "{head}");
    proxy.stop().await;
}

#[tokio::test]
async fn target_insecure_accepts_any_target_certificate() {
    let ca = ca("target CA nobody trusts");
    let (target, _) = tls_echo_server(&ca, &["somewhere.else"]).await;
    let mut settings = ssl_target_settings("127.0.0.1", target);
    settings.target_insecure = true;
    let proxy = start_proxy(settings).await;
    let (mut client, head) = upgrade_answer(proxy.addr).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_echo(&mut client).await;
    proxy.stop().await;
}

#[tokio::test]
async fn without_ssl_target_the_target_is_spoken_to_plainly() {
    let ca = ca("target CA");
    let (target, _) = tls_echo_server(&ca, &["localhost"]).await;
    let mut settings = ssl_target_settings("localhost", target);
    settings.ssl_target = false;
    let proxy = start_proxy(settings).await;
    // The upgrade succeeds (TCP connects); what is relayed is not TLS, so no echo comes back.
    let (_, head) = upgrade_answer(proxy.addr).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_bad_target_cafile_is_a_start_up_error_naming_it() {
    let missing = temp_dir("tls-target-bad").join("missing.pem");
    let mut settings = ssl_target_settings("localhost", support::closed_port().await);
    settings.target_cafile = Some(missing.clone());
    match Server::new(settings) {
        Ok(_) => panic!("the server should refuse to start"),
        Err(err) => {
            let message = err.to_string();
            assert!(
                message.starts_with(&format!(
                    "websockify: --target-cafile {}: ",
                    missing.display()
                )),
                "{message}"
            );
        }
    }
}
