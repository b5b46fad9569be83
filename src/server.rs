//! server: accepts connections and walks each one down the pipeline: classify its first bytes
//! (a Flash policy request is answered there), TLS if it starts with a handshake, HTTP until it
//! asks for a WebSocket, then the target and the relay. Other HTTP requests go to `web` when
//! `--web` is on, and get 405 otherwise. `Server::run` is shared by `main` and the tests: it
//! takes a bound listener and a shutdown future.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn, Instrument};

use crate::classify::{
    check_policy_request, classify, PolicyCheck, Protocol, POLICY_REQUEST, POLICY_RESPONSE,
};
use crate::frame::close_code;
use crate::handshake;
use crate::listen::tune_tcp;
use crate::logging::redact_target;
use crate::relay::{self, Mode};
use crate::settings::Settings;
use crate::stall::SendTimeout;
use crate::target;
use crate::tls::{self, TlsError};
use crate::web::{self, Body, Site};

/// The largest request head we read (hyper's smallest buffer limit is 8 KiB).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// A configured proxy, ready to serve a listener.
pub struct Server {
    settings: Arc<Settings>,
    tls: Option<TlsAcceptor>,
    site: Option<Arc<Site>>,
}

impl Server {
    /// Checks what can be checked before serving (the certificate, mainly).
    pub fn new(settings: Settings) -> Result<Server, TlsError> {
        let tls = tls::load(&settings)?.map(TlsAcceptor::from);
        if tls.is_none() {
            debug!(cert = %settings.cert.display(), "no certificate: TLS clients will be refused");
        }
        let site = settings
            .web
            .as_deref()
            .map(|dir| Arc::new(Site::new(dir, settings.file_only)));
        Ok(Server {
            settings: Arc::new(settings),
            tls,
            site,
        })
    }

    /// Serves `listener` until `shutdown` completes (then every session ends at once), or until
    /// `--timeout`, `--idle-timeout` or `--run-once` says to stop (then running sessions finish).
    pub async fn run(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let settings = self.settings.clone();
        let shared = Arc::new(Shared {
            settings: self.settings,
            tls: self.tls,
            site: self.site,
            next_id: AtomicU64::new(1),
            activity: watch::Sender::new(Activity::default()),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut activity = shared.activity.subscribe();
        let started = Instant::now();
        // When the last connection ended (None while some are open), for --idle-timeout.
        let mut idle_since = Some(started);
        tokio::pin!(shutdown);
        let interrupted = loop {
            let now_active = activity.borrow_and_update().clone();
            if now_active.connections > 0 {
                idle_since = None;
            } else if idle_since.is_none() {
                idle_since = Some(Instant::now());
            }
            if settings.run_once && now_active.websockets > 0 {
                info!("exiting after one WebSocket session (--run-once)");
                break false;
            }
            let timeout_at = settings.timeout.map(|t| started + t);
            let idle_at = settings
                .idle_timeout
                .zip(idle_since)
                .map(|(t, since)| since + t);
            tokio::select! {
                () = &mut shutdown => break true,
                () = sleep_until(timeout_at) => {
                    info!("listener exit due to --timeout");
                    break false;
                }
                () = sleep_until(idle_at) => {
                    info!("listener exit due to --idle-timeout");
                    break false;
                }
                _ = activity.changed() => continue,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
                        let guard = ConnectionGuard::new(&shared);
                        let mut stop = stop_rx.clone();
                        let shared = shared.clone();
                        let span = tracing::info_span!("conn", id, %peer);
                        tokio::spawn(async move {
                            tokio::select! {
                                () = serve_connection(stream, &shared) => {}
                                _ = stop.changed() => debug!("ended by shutdown"),
                            }
                            drop(guard);
                        }.instrument(span));
                    }
                    Err(err) => {
                        // Out of file descriptors, most likely: back off instead of spinning.
                        warn!("accept failed: {err}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        };
        drop(listener);
        if interrupted {
            let _ = stop_tx.send(true);
        }
        // Wait for sessions to end: at once when interrupted, naturally otherwise.
        let _ = activity.wait_for(|a| a.connections == 0).await;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

struct Shared {
    settings: Arc<Settings>,
    tls: Option<TlsAcceptor>,
    /// `--web`: the static files, if any.
    site: Option<Arc<Site>>,
    next_id: AtomicU64,
    activity: watch::Sender<Activity>,
}

/// What the accept loop watches for `--idle-timeout` and `--run-once`.
#[derive(Debug, Clone, Default)]
struct Activity {
    /// Connections open now.
    connections: usize,
    /// WebSocket sessions begun since start.
    websockets: u64,
}

/// Counts a connection as open while it lives.
struct ConnectionGuard(Arc<Shared>);

impl ConnectionGuard {
    fn new(shared: &Arc<Shared>) -> Self {
        // The accept loop only cares when the server becomes busy or idle: waking it for every
        // connection would cost a cross-thread wake-up per session.
        shared.activity.send_if_modified(|a| {
            a.connections += 1;
            a.connections == 1
        });
        ConnectionGuard(shared.clone())
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.activity.send_if_modified(|a| {
            a.connections -= 1;
            a.connections == 0
        });
    }
}

async fn serve_connection(stream: TcpStream, shared: &Arc<Shared>) {
    tune_tcp(&stream);
    let handshake_timeout = shared.settings.handshake_timeout;
    let mut first = [0u8; 1];
    match tokio::time::timeout(handshake_timeout, stream.peek(&mut first)).await {
        Err(_) => return debug!("dropped: sent nothing within {handshake_timeout:?}"),
        Ok(Err(err)) => return debug!("dropped: {err}"),
        Ok(Ok(0)) => return debug!("closed before sending anything"),
        Ok(Ok(_)) => {}
    }
    match classify(&first) {
        Protocol::Tls => {
            let Some(acceptor) = &shared.tls else {
                return info!(
                    "TLS client refused: certificate {} not found",
                    shared.settings.cert.display()
                );
            };
            // Boxed for the same reason as the HTTP state: it is not needed after the handshake.
            let handshake = Box::pin(acceptor.accept(stream));
            match tokio::time::timeout(handshake_timeout, handshake).await {
                // Boxed so that plain connections' tasks are not sized for a TLS session.
                Ok(Ok(tls_stream)) => Box::pin(serve_http(tls_stream, true, shared)).await,
                Ok(Err(err)) => info!("TLS handshake failed: {err}"),
                Err(_) => info!("TLS handshake not done within {handshake_timeout:?}"),
            }
        }
        Protocol::Http | Protocol::FlashPolicy if shared.settings.ssl_only => {
            info!("plain client refused (--ssl-only)");
        }
        Protocol::FlashPolicy => answer_flash_policy(stream, handshake_timeout).await,
        Protocol::Http => serve_http(stream, false, shared).await,
    }
}

/// The seed's Flash socket policy: reads at most the request's 23 bytes within the handshake
/// timeout; the exact request gets the policy document, anything else is dropped. Either way
/// the connection then closes.
async fn answer_flash_policy(mut stream: TcpStream, handshake_timeout: Duration) {
    let read_request = async {
        let mut got = [0u8; POLICY_REQUEST.len()];
        let mut n = 0;
        loop {
            match check_policy_request(&got[..n]) {
                PolicyCheck::Complete => return true,
                PolicyCheck::Wrong => return false,
                PolicyCheck::Incomplete => {}
            }
            match stream.read(&mut got[n..]).await {
                Ok(0) | Err(_) => return false,
                Ok(k) => n += k,
            }
        }
    };
    match tokio::time::timeout(handshake_timeout, read_request).await {
        Ok(true) => {}
        Ok(false) => return debug!("dropped: starts with '<' but is no Flash policy request"),
        Err(_) => {
            return debug!("dropped: no complete Flash policy request within {handshake_timeout:?}")
        }
    }
    let write = async {
        stream.write_all(POLICY_RESPONSE).await?;
        stream.shutdown().await
    };
    match tokio::time::timeout(handshake_timeout, write).await {
        Ok(Ok(())) => debug!("Flash policy request answered"),
        Ok(Err(err)) => debug!("Flash policy answer failed: {err}"),
        Err(_) => debug!("Flash policy answer not taken within {handshake_timeout:?}"),
    }
}

/// What the HTTP service hands the connection task when it answers 101.
struct Accepted {
    on_upgrade: OnUpgrade,
    mode: Mode,
    path: String,
}

async fn serve_http<IO>(io: IO, is_tls: bool, shared: &Arc<Shared>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let accepted: Arc<Mutex<Option<Accepted>>> = Arc::default();
    let slot = accepted.clone();
    let site = shared.site.clone();
    let service = service_fn(move |req| {
        let slot = slot.clone();
        let site = site.clone();
        async move { Ok::<_, std::convert::Infallible>(answer(req, &slot, site.as_deref()).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.settings.handshake_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    // Boxed: the HTTP state is large and only needed until the upgrade; inline, it would stay
    // in the connection's task for the whole session.
    let conn = Box::pin(
        builder
            .serve_connection(
                TokioIo::new(SendTimeout::new(io, shared.settings.send_timeout)),
                service,
            )
            .with_upgrades(),
    );
    if let Err(err) = conn.await {
        debug!("HTTP connection ended: {err}");
    }
    let Some(accepted) = accepted.lock().ok().and_then(|mut slot| slot.take()) else {
        return;
    };
    let upgraded = match accepted.on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(err) => return debug!("upgrade failed: {err}"),
    };
    // The relay gets the raw stream: no send timeout on a WebSocket session.
    let Ok(parts) = upgraded.downcast::<TokioIo<SendTimeout<IO>>>() else {
        return warn!("upgraded connection of an unexpected type");
    };
    let mut client = parts.io.into_inner().into_inner();
    let run_once = shared.settings.run_once;
    shared.activity.send_if_modified(|a| {
        a.websockets += 1;
        run_once
    });
    let target_spec = &shared.settings.target;
    let scheme = if is_tls { "wss" } else { "ws" };
    info!(%scheme, path = %redact_target(&accepted.path), target = %target_spec, "WebSocket connection");
    let began = Instant::now();
    let mut target = match target::connect(target_spec).await {
        Ok(target) => target,
        Err(err) => {
            warn!(target = %target_spec, "target connection failed: {err}");
            relay::refuse(
                &mut client,
                parts.read_buf,
                close_code::INTERNAL_ERROR,
                "Target connection failed",
            )
            .await;
            return;
        }
    };
    let report = relay::run(&mut client, &mut target, parts.read_buf, accepted.mode).await;
    info!(
        duration_ms = began.elapsed().as_millis() as u64,
        client_to_target = report.client_to_target,
        target_to_client = report.target_to_client,
        "closed: {}",
        report.ended
    );
}

/// Answers one HTTP request: a WebSocket upgrade (on any path) goes to [`upgrade`]; another
/// GET or HEAD to the web server when `--web` is on; anything else gets 405.
async fn answer(
    req: Request<Incoming>,
    slot: &Mutex<Option<Accepted>>,
    site: Option<&Site>,
) -> Response<Body> {
    if handshake::wants_websocket(req.headers()) {
        return upgrade(req, slot);
    }
    let readable = matches!(*req.method(), Method::GET | Method::HEAD);
    let (text, allow) = match site {
        Some(site) if readable => {
            return web::serve(site, req.method(), req.uri(), req.headers()).await;
        }
        Some(_) => ("405 Method Not Allowed\n", "GET, HEAD"),
        None => (
            "405 Method Not Allowed: this server only accepts WebSocket connections\n",
            "GET",
        ),
    };
    debug!(method = %req.method(), path = %redact_target(&req.uri().to_string()), "not a WebSocket request: 405");
    let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, text);
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// 101 for a good upgrade request (and leaves the upgrade in `slot`), 400 for a bad one.
fn upgrade(mut req: Request<Incoming>, slot: &Mutex<Option<Accepted>>) -> Response<Body> {
    let upgrade = match handshake::check(req.method(), req.headers()) {
        Ok(upgrade) => upgrade,
        Err(refusal) => {
            info!(path = %redact_target(&req.uri().to_string()), "bad WebSocket request: {refusal}");
            let mut response = plain(
                StatusCode::BAD_REQUEST,
                &format!("400 Bad Request: {refusal}\n"),
            );
            if refusal == handshake::Refusal::BadVersion {
                response
                    .headers_mut()
                    .insert("sec-websocket-version", HeaderValue::from_static("13"));
            }
            return response;
        }
    };
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let on_upgrade = hyper::upgrade::on(&mut req);
    if let Ok(mut slot) = slot.lock() {
        *slot = Some(Accepted {
            on_upgrade,
            mode: upgrade.mode,
            path,
        });
    }
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&upgrade.accept) {
        headers.insert("sec-websocket-accept", accept);
    }
    if let Some(protocol) = upgrade.protocol {
        headers.insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
    }
    response
}

fn plain(status: StatusCode, body: &str) -> Response<Body> {
    let mut response = Response::new(Body::from_bytes(body.to_owned()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
