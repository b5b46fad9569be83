//! Token plugins with a backend: BaseTokenAPI and JSONTokenApi against a real HTTP server in
//! this process (targets, 404, 500, garbage, a slow answer, the cache, URL-encoding, https with
//! certificate and host-name checks), and
//! TokenRedis against a real `redis-server` started on a free loopback port (JSON and plain
//! values, namespaces, quoted fields, one pooled connection, Redis restarted mid-test).

use websockify_test_support as support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use support::redis::Redis;
use support::*;
use websockify::{Settings, Targets, TokenConfig};

fn token_settings(plugin: &str, source: &str) -> Settings {
    let mut settings = settings_to("127.0.0.1:9".parse().unwrap());
    settings.target = Targets::Tokens(TokenConfig {
        plugin: plugin.into(),
        source: Some(source.into()),
        host_token: false,
    });
    settings
}

// ---------------------------------------------------------------------------------------
// The token APIs

/// What the fake API answers for a path.
#[derive(Clone)]
enum Reply {
    Ok(String),
    Status(u16),
    Slow(Duration, String),
}

/// A token API on 127.0.0.1: answers by the request's path-and-query (as received, still
/// percent-encoded), 404 for anything it does not know; counts and records requests.
struct Api {
    addr: SocketAddr,
    replies: Arc<Mutex<HashMap<String, Reply>>>,
    seen: Arc<Mutex<Vec<String>>>,
    hits: Arc<AtomicUsize>,
}

impl Api {
    async fn start() -> Api {
        Api::serve(None).await
    }

    /// The same API over https, with the certificate and key given (PEM).
    async fn start_tls(cert_pem: &str, key_pem: &str) -> Api {
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        Api::serve(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> Api {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let replies: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let hits = Arc::new(AtomicUsize::new(0));
        let (r, s, h) = (replies.clone(), seen.clone(), hits.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (r, s, h) = (r.clone(), s.clone(), h.clone());
                let service = hyper::service::service_fn(move |req: Request<_>| {
                    let (r, s, h) = (r.clone(), s.clone(), h.clone());
                    async move {
                        let key = req.uri().path_and_query().unwrap().to_string();
                        h.fetch_add(1, Ordering::SeqCst);
                        s.lock().unwrap().push(key.clone());
                        let reply = r.lock().unwrap().get(&key).cloned();
                        let (status, body) = match reply {
                            Some(Reply::Ok(body)) => (200, body),
                            Some(Reply::Status(status)) => (status, "oops".into()),
                            Some(Reply::Slow(delay, body)) => {
                                tokio::time::sleep(delay).await;
                                (200, body)
                            }
                            None => (404, "no such token".into()),
                        };
                        let response = Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::from(body)))
                            .unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                let tls = tls.clone();
                tokio::spawn(async move {
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let io = hyper_util::rt::TokioIo::new(stream);
                            let _ = http.serve_connection(io, service).await;
                        }
                        Some(tls) => {
                            // A client that refuses our certificate ends here.
                            let Ok(stream) = tls.accept(stream).await else {
                                return;
                            };
                            let io = hyper_util::rt::TokioIo::new(stream);
                            let _ = http.serve_connection(io, service).await;
                        }
                    }
                });
            }
        });
        Api {
            addr,
            replies,
            seen,
            hits,
        }
    }

    /// The source URL: the token goes in the path, a fixed parameter follows.
    fn source(&self) -> String {
        format!("http://{}/t/%s?v=1", self.addr)
    }

    fn reply(&self, encoded_token: &str, reply: Reply) {
        self.replies
            .lock()
            .unwrap()
            .insert(format!("/t/{encoded_token}?v=1"), reply);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn base_token_api_each_token_reaches_its_own_target() {
    let (a, b) = (named_target("A").await, named_target("B").await);
    let api = Api::start().await;
    api.reply("desk-a", Reply::Ok(format!("{a}\n")));
    api.reply("desk-b", Reply::Ok(format!("  127.0.0.1 : {} ", b.port())));
    let proxy = start_proxy(token_settings("BaseTokenAPI", &api.source())).await;
    assert_reaches(proxy.addr, "/?token=desk-a", "A").await;
    assert_reaches(proxy.addr, "/websockify?token=desk-b", "B").await;
    assert_upgrade_refused(proxy.addr, "/?token=desk-c", 404, "Token not found").await;
    assert_upgrade_refused(proxy.addr, "/", 404, "Token not present").await;
    proxy.stop().await;
}

#[tokio::test]
async fn json_token_api_takes_host_and_a_numeric_or_string_port() {
    let (a, b) = (named_target("A").await, named_target("B").await);
    let api = Api::start().await;
    let json = |addr: SocketAddr, quoted: bool| {
        let port = if quoted {
            format!("\"{}\"", addr.port())
        } else {
            addr.port().to_string()
        };
        format!(r#"{{"host": "{}", "port": {port}}}"#, addr.ip())
    };
    api.reply("desk-a", Reply::Ok(json(a, false)));
    api.reply("desk-b", Reply::Ok(json(b, true)));
    api.reply("plain", Reply::Ok(a.to_string()));
    let proxy = start_proxy(token_settings(
        "websockify.token_plugins.JSONTokenApi",
        &api.source(),
    ))
    .await;
    assert_reaches(proxy.addr, "/?token=desk-a", "A").await;
    assert_reaches(proxy.addr, "/?token=desk-b", "B").await;
    assert_upgrade_refused(
        proxy.addr,
        "/?token=plain",
        502,
        "token API answer malformed",
    )
    .await;
    assert_upgrade_refused(proxy.addr, "/?token=nope", 404, "Token not found").await;
    proxy.stop().await;
}

#[tokio::test]
async fn api_errors_are_502_and_an_api_that_does_not_answer_is_503() {
    let api = Api::start().await;
    api.reply("err", Reply::Status(500));
    api.reply("forbidden", Reply::Status(403));
    api.reply("garbage", Reply::Ok("<html>hello</html>".into()));
    api.reply(
        "slow",
        Reply::Slow(Duration::from_secs(8), "127.0.0.1:1".into()),
    );
    let proxy = start_proxy(token_settings("BaseTokenAPI", &api.source())).await;
    assert_upgrade_refused(
        proxy.addr,
        "/?token=err",
        502,
        "token API answered an error",
    )
    .await;
    assert_upgrade_refused(
        proxy.addr,
        "/?token=forbidden",
        502,
        "token API answered an error",
    )
    .await;
    assert_upgrade_refused(
        proxy.addr,
        "/?token=garbage",
        502,
        "token API answer malformed",
    )
    .await;
    // Past the API time-out (5 s), before the gate's (10 s).
    let started = Instant::now();
    assert_upgrade_refused(proxy.addr, "/?token=slow", 503, "token API unavailable").await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(8),
        "{took:?}"
    );
    proxy.stop().await;

    // Nothing listening.
    let closed = closed_port().await;
    let proxy = start_proxy(token_settings(
        "JSONTokenApi",
        &format!("http://{closed}/%s"),
    ))
    .await;
    assert_upgrade_refused(proxy.addr, "/?token=x", 503, "token API unavailable").await;
    proxy.stop().await;
}

#[tokio::test]
async fn answers_are_cached_briefly_errors_never_and_the_api_recovers() {
    let a = named_target("A").await;
    let api = Api::start().await;
    api.reply("desk", Reply::Ok(a.to_string()));
    let proxy = start_proxy(token_settings("BaseTokenAPI", &api.source())).await;
    // A target: the API is asked once for two lookups.
    assert_reaches(proxy.addr, "/?token=desk", "A").await;
    assert_reaches(proxy.addr, "/?token=desk", "A").await;
    assert_eq!(api.hits(), 1);
    // "Not found" too.
    assert_upgrade_refused(proxy.addr, "/?token=gone", 404, "Token not found").await;
    assert_upgrade_refused(proxy.addr, "/?token=gone", 404, "Token not found").await;
    assert_eq!(api.hits(), 2);
    // An error is not cached: each lookup asks again ...
    api.reply("flaky", Reply::Status(500));
    assert_upgrade_refused(
        proxy.addr,
        "/?token=flaky",
        502,
        "token API answered an error",
    )
    .await;
    assert_upgrade_refused(
        proxy.addr,
        "/?token=flaky",
        502,
        "token API answered an error",
    )
    .await;
    assert_eq!(api.hits(), 4);
    // ... so the token works as soon as the API does.
    api.reply("flaky", Reply::Ok(a.to_string()));
    assert_reaches(proxy.addr, "/?token=flaky", "A").await;
    assert_eq!(api.hits(), 5);
    proxy.stop().await;
}

#[tokio::test]
async fn the_token_is_url_encoded_into_the_api_url() {
    let (a, b) = (named_target("A").await, named_target("B").await);
    let api = Api::start().await;
    // The token `a&b/c d` (sent as `?token=a%26b%2Fc%20d`) must reach the API as one
    // encoded path segment, not as a parameter, a path or a broken request line.
    api.reply("a%26b%2Fc%20d", Reply::Ok(a.to_string()));
    api.reply("a", Reply::Ok(b.to_string()));
    let proxy = start_proxy(token_settings("BaseTokenAPI", &api.source())).await;
    assert_reaches(proxy.addr, "/?token=a%26b%2Fc%20d", "A").await;
    assert_upgrade_refused(proxy.addr, "/?token=x%3Fv%3D2%23", 404, "Token not found").await;
    assert_eq!(
        *api.seen.lock().unwrap(),
        ["/t/a%26b%2Fc%20d?v=1", "/t/x%3Fv%3D2%23?v=1"]
    );
    proxy.stop().await;
}

/// An https token API: its certificate is checked against the system's roots (here a private
/// CA named by `SSL_CERT_FILE`, which the system store honours) and the URL's host name. The
/// same API is refused when its certificate is not trusted or names another host.
#[tokio::test]
async fn an_https_token_api_is_trusted_through_the_system_roots_and_the_host_name() {
    let a = named_target("A").await;
    // For "localhost" only: the API is reached by that name, or by 127.0.0.1 to be refused.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.key_pair.serialize_pem());
    let dir = temp_dir("https-api");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &cert_pem).unwrap();
    let ca_file = ca_file.to_str().unwrap();
    let api = Api::start_tls(&cert_pem, &key_pem).await;
    api.reply("desk", Reply::Ok(a.to_string()));
    let port = api.addr.port();

    // Trusted, and named as the certificate names it: the token reaches its target.
    let source = format!("--token-source=https://localhost:{port}/t/%s?v=1");
    let trusted = [("SSL_CERT_FILE", ca_file), ("SSL_CERT_DIR", "/nonexistent")];
    let server = LoggedBinary::start_with_env(
        &["--token-plugin=BaseTokenAPI", &source, "127.0.0.1:0"],
        &trusted,
    )
    .await;
    assert_reaches(server.addr, "/?token=desk", "A").await;
    assert_eq!(api.hits(), 1);
    drop(server);

    // The same API by a name its certificate does not carry: refused, the API never answers.
    let source = format!("--token-source=https://127.0.0.1:{port}/t/%s?v=1");
    let server = LoggedBinary::start_with_env(
        &["--token-plugin=BaseTokenAPI", &source, "127.0.0.1:0"],
        &trusted,
    )
    .await;
    assert_upgrade_refused(server.addr, "/?token=desk", 503, "token API unavailable").await;
    drop(server);

    // Named right, but its CA is not among the roots (only the distribution's are).
    let source = format!("--token-source=https://localhost:{port}/t/%s?v=1");
    let server = LoggedBinary::start_with_env(
        &["--token-plugin=BaseTokenAPI", &source, "127.0.0.1:0"],
        &[],
    )
    .await;
    assert_upgrade_refused(server.addr, "/?token=desk", 503, "token API unavailable").await;
    assert_eq!(api.hits(), 1, "an untrusted connection got an answer");
}

/// Only an https API needs the system's root certificates: with none at all (`SSL_CERT_FILE`
/// and `SSL_CERT_DIR` naming nothing) a plain http API still serves, and an https one is a
/// start-up error that says why.
#[tokio::test]
async fn only_an_https_token_api_needs_system_roots() {
    let a = named_target("A").await;
    let api = Api::start().await;
    api.reply("desk", Reply::Ok(a.to_string()));
    let no_roots = [
        ("SSL_CERT_FILE", "/nonexistent"),
        ("SSL_CERT_DIR", "/nonexistent"),
    ];
    let source = format!("--token-source={}", api.source());
    let server = LoggedBinary::start_with_env(
        &["--token-plugin=BaseTokenAPI", &source, "127.0.0.1:0"],
        &no_roots,
    )
    .await;
    assert_reaches(server.addr, "/?token=desk", "A").await;
    drop(server);

    let source = format!("--token-source=https://{}/t/%s", api.addr);
    let mut command = std::process::Command::new(websockify_binary());
    command
        .args(["--token-plugin=BaseTokenAPI", &source, "127.0.0.1:0"])
        .envs(no_roots);
    let mut server = LoggedBinary::spawn_command(command);
    let (status, _) = server.exit_within(WAIT).await;
    assert_eq!(status.code(), Some(1));
    server
        .wait_for("no system root certificates for https")
        .await;
}

#[test]
fn malformed_api_urls_are_start_up_errors_naming_the_source() {
    for (source, why) in [
        ("http://api/lookup", "no %s"),
        ("ftp://api/%s", "http://"),
        ("/tmp/%s", "URL"),
        ("http://api/%s/%s", "more than one %s"),
    ] {
        for plugin in ["BaseTokenAPI", "JSONTokenApi"] {
            let err = startup_error(token_settings(plugin, source));
            assert!(
                err.message.contains(&format!("--token-source {source}: ")),
                "{err}"
            );
            assert!(err.message.contains(why), "{source}: {err}");
            assert_eq!(err.code, 1);
        }
    }
}

/// An answer's body is read up to 64 KiB (api.rs's `MAX_BODY`): a target padded to exactly
/// that is taken, one byte more is a malformed answer.
#[tokio::test]
async fn api_answers_are_read_up_to_64_kib() {
    let a = named_target("A").await.to_string();
    let api = Api::start().await;
    // Padded with spaces, which the answer's reading strips.
    let padded = |len: usize| format!("{a}{}", " ".repeat(len - a.len()));
    api.reply("full", Reply::Ok(padded(64 * 1024)));
    api.reply("over", Reply::Ok(padded(64 * 1024 + 1)));
    let proxy = start_proxy(token_settings("BaseTokenAPI", &api.source())).await;
    assert_reaches(proxy.addr, "/?token=full", "A").await;
    assert_upgrade_refused(
        proxy.addr,
        "/?token=over",
        502,
        "token API answer malformed",
    )
    .await;
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------------
// TokenRedis, against a real redis-server

#[tokio::test]
async fn token_redis_json_and_plain_values_each_token_its_own_target() {
    let (a, b) = (named_target("A").await, named_target("B").await);
    let redis = Redis::start(None);
    redis.set(0, "desk-a", &format!(r#"{{"host": "{a}"}}"#));
    redis.set(0, "desk-b", &format!("  127.0.0.1:{}\n", b.port()));
    redis.set(0, "broken", "no target here");
    redis.set(0, "broken-json", r#"{"hostname": "x:1"}"#);
    redis.cli(&["RPUSH", "a-list", "x"]);
    let proxy = start_proxy(token_settings(
        "TokenRedis",
        &format!("127.0.0.1:{}", redis.port),
    ))
    .await;
    assert_reaches(proxy.addr, "/?token=desk-a", "A").await;
    assert_reaches(proxy.addr, "/?token=desk-b", "B").await;
    assert_upgrade_refused(proxy.addr, "/?token=desk-c", 404, "Token not found").await;
    assert_upgrade_refused(
        proxy.addr,
        "/?token=broken",
        502,
        "token Redis value malformed",
    )
    .await;
    assert_upgrade_refused(
        proxy.addr,
        "/?token=broken-json",
        502,
        "token Redis value malformed",
    )
    .await;
    assert_upgrade_refused(
        proxy.addr,
        "/?token=a-list",
        502,
        "token Redis answered an error",
    )
    .await;
    // A deleted key stops working at once (nothing is cached).
    redis.cli(&["DEL", "desk-a"]);
    assert_upgrade_refused(proxy.addr, "/?token=desk-a", 404, "Token not found").await;
    proxy.stop().await;
}

/// A lookup is one GET: an error Redis answers (a key of another type) is not asked again;
/// only a broken connection is.
#[tokio::test]
async fn an_error_that_redis_answers_is_not_asked_again() {
    let redis = Redis::start(None);
    redis.cli(&["RPUSH", "a-list", "x"]);
    let proxy = start_proxy(token_settings(
        "TokenRedis",
        &format!("127.0.0.1:{}", redis.port),
    ))
    .await;
    assert_eq!(redis.cli(&["CONFIG", "RESETSTAT"]).trim(), "OK");
    assert_upgrade_refused(
        proxy.addr,
        "/?token=a-list",
        502,
        "token Redis answered an error",
    )
    .await;
    let stats = redis.cli(&["INFO", "commandstats"]);
    assert!(stats.contains("cmdstat_get:calls=1,"), "{stats}");
    proxy.stop().await;
}

#[tokio::test]
async fn token_redis_db_password_and_a_quoted_namespace() {
    let (a, b) = (named_target("A").await, named_target("B").await);
    let redis = Redis::start(Some("se:cret"));
    // The namespace `app:v1` (quoted: it holds a colon) makes the key `app:v1:desk`.
    redis.set(2, "app:v1:desk", &a.to_string());
    redis.set(2, "desk", &b.to_string());
    redis.set(0, "app:v1:other", &b.to_string());
    let source = format!("127.0.0.1:{}:2:\"se:cret\":\"app:v1\"", redis.port);
    let proxy = start_proxy(token_settings("TokenRedis", &source)).await;
    assert_reaches(proxy.addr, "/?token=desk", "A").await;
    // Only that database, only that namespace.
    assert_upgrade_refused(proxy.addr, "/?token=other", 404, "Token not found").await;
    assert_upgrade_refused(proxy.addr, "/?token=v1:desk", 404, "Token not found").await;
    proxy.stop().await;

    // A wrong password: Redis cannot be used, every lookup is refused (the log says why).
    let source = format!("127.0.0.1:{}:2:wrong:\"app:v1\"", redis.port);
    let proxy = start_proxy(token_settings("TokenRedis", &source)).await;
    assert_upgrade_refused(proxy.addr, "/?token=desk", 503, "token Redis unavailable").await;
    proxy.stop().await;
}

#[tokio::test]
async fn token_redis_uses_one_connection_and_recovers_when_redis_comes_back() {
    let a = named_target("A").await;
    let mut redis = Redis::start(None);
    redis.set(0, "desk", &a.to_string());
    let proxy = start_proxy(token_settings(
        "TokenRedis",
        &format!("127.0.0.1:{}", redis.port),
    ))
    .await;
    assert_reaches(proxy.addr, "/?token=desk", "A").await;
    // Ten more lookups: no new connection to Redis (the INFO call itself is one).
    let before = redis.connections_received();
    for _ in 0..10 {
        assert_reaches(proxy.addr, "/?token=desk", "A").await;
    }
    let after = redis.connections_received();
    assert_eq!(after - before, 1, "connections to Redis for 10 lookups");

    // Redis goes away: each lookup is a 503, quickly.
    redis.stop();
    for _ in 0..3 {
        let started = Instant::now();
        assert_upgrade_refused(proxy.addr, "/?token=desk", 503, "token Redis unavailable").await;
        assert!(started.elapsed() < Duration::from_secs(3));
    }
    // Redis is back (empty: nothing was saved): lookups work again, with no restart.
    redis.restart();
    assert_upgrade_refused(proxy.addr, "/?token=desk", 404, "Token not found").await;
    redis.set(0, "desk", &a.to_string());
    assert_reaches(proxy.addr, "/?token=desk", "A").await;
    proxy.stop().await;
}

/// Redis restarted while no lookup ran: the shared connection is dead, and only a lookup
/// finds out. That lookup must still succeed (the dead connection is replaced and the command
/// sent again), not fail once per restart.
#[tokio::test]
async fn the_first_lookup_after_a_quiet_redis_restart_succeeds() {
    let a = named_target("A").await;
    let mut redis = Redis::start(None);
    let proxy = start_proxy(token_settings(
        "TokenRedis",
        &format!("127.0.0.1:{}", redis.port),
    ))
    .await;
    redis.set(0, "desk", &a.to_string());
    assert_reaches(proxy.addr, "/?token=desk", "A").await;
    for _ in 0..3 {
        redis.stop();
        redis.restart();
        redis.set(0, "desk", &a.to_string());
        assert_reaches(proxy.addr, "/?token=desk", "A").await;
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_redis_that_does_not_answer_is_503_within_the_lookup_bound() {
    let a = named_target("A").await;
    let redis = Redis::start(None);
    redis.set(0, "desk", &a.to_string());
    let proxy = start_proxy(token_settings(
        "TokenRedis",
        &format!("127.0.0.1:{}", redis.port),
    ))
    .await;
    assert_reaches(proxy.addr, "/?token=desk", "A").await;
    redis.signal("STOP");
    let started = Instant::now();
    assert_upgrade_refused(proxy.addr, "/?token=desk", 503, "token Redis unavailable").await;
    let took = started.elapsed();
    // The lookup bound (2 s), well before the gate's (10 s).
    assert!(took < Duration::from_secs(4), "{took:?}");
    redis.signal("CONT");
    assert_reaches(proxy.addr, "/?token=desk", "A").await;
    proxy.stop().await;
}

#[tokio::test]
async fn token_redis_down_at_start_up_is_503_until_it_is_up() {
    let a = named_target("A").await;
    let mut redis = Redis::start(None);
    redis.stop();
    let proxy = start_proxy(token_settings(
        "TokenRedis",
        &format!("127.0.0.1:{}", redis.port),
    ))
    .await;
    assert_upgrade_refused(proxy.addr, "/?token=desk", 503, "token Redis unavailable").await;
    redis.restart();
    redis.set(0, "desk", &a.to_string());
    assert_reaches(proxy.addr, "/?token=desk", "A").await;
    proxy.stop().await;
}

#[test]
fn malformed_redis_sources_are_start_up_errors_naming_the_source() {
    for (source, why) in [
        ("h:1:2:3:4:5", "more than five fields"),
        ("h:port", "port"),
        (":6379", "no host"),
        ("h::db", "db"),
    ] {
        let err = startup_error(token_settings("TokenRedis", source));
        assert!(
            err.message.contains(&format!("--token-source {source}: ")),
            "{err}"
        );
        assert!(err.message.contains(why), "{source}: {err}");
    }
}
