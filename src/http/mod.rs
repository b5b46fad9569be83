//! http: one connection's HTTP/1.1 life, until it becomes a WebSocket or ends. Routes each
//! request: an upgrade goes through the RFC 6455 checks (`upgrade`), then the gate (where may
//! it go?), then the target is connected, and only then is 101 sent; another GET or HEAD goes
//! to the static files (`web`) when `--web` is on (past the auth plugin first with `--web-auth`);
//! anything else gets 405.
//!
//! Why connect before the 101: a target that cannot be reached is then an HTTP 502 (504 on a
//! time-out) with a reason, which a browser reports as a failed connection, instead of a
//! WebSocket that opens and closes at once with 1011. noVNC shows "Failed to connect to
//! server" either way, so nothing is lost; the reference sends 101 first, and no client we know
//! depends on that. The cost is that the 101 waits for the target's TCP handshake (bounded by
//! `target::CONNECT_TIMEOUT`), which the first relayed byte had to wait for anyway.
//!
//! Bounds per connection: a request head must arrive within the handshake timeout and fit
//! `MAX_HEAD_BYTES`; a refused upgrade ends the connection (`Connection: close`, as the
//! reference); a keep-alive connection serves at most
//! `MAX_REQUESTS` requests. Together they bound what one connection can write to the log.

pub mod forwarded;
pub mod stall;
pub mod upgrade;
pub mod web;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, warn, Instrument};

use crate::config::AllowEntry;
use crate::conninfo::{Addr, ConnInfo};
use crate::error::{Error, Kind, Side};
use crate::gate::Gate;
use crate::observe::metrics;
use crate::observe::redact::request_target;
use crate::target::{self, Target};
use crate::ws::Mode;
use stall::SendTimeout;
use web::{Body, Site};

/// The largest request head we read (hyper's smallest buffer limit is 8 KiB).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Requests one keep-alive connection may make; the answer to the last says
/// `Connection: close`. Bounds the log lines and work one connection can cause (nginx's
/// `keepalive_requests` is 1000; a browser loading noVNC makes ~60 requests, most of them
/// spread over several connections).
pub const MAX_REQUESTS: u32 = 100;

/// What the HTTP side needs to answer requests.
pub struct Http {
    /// Time for a whole request head.
    pub handshake_timeout: Duration,
    /// How long a response may stall on a client that does not read (see `stall`).
    pub send_timeout: Duration,
    /// `--web`: the static files, if any.
    pub site: Option<Arc<Site>>,
    /// Swapped whole on SIGHUP: a request uses the gate it started with.
    pub gate: ArcSwap<Gate>,
    /// Connects the targets the gate chooses (TLS with `--ssl-target`).
    pub connector: target::Connector,
    /// `--trusted-proxies`: peers whose `Forwarded`/`X-Forwarded-For` name the client.
    pub trusted_proxies: Vec<AllowEntry>,
}

/// A connection that became a WebSocket: the client's stream (and what hyper read past the
/// request head), the connected target, and what the session needs to know.
pub struct Upgraded<IO> {
    pub client: IO,
    pub leftover: Bytes,
    pub target: Target,
    /// The target as it is shown to people.
    pub target_name: String,
    pub mode: Mode,
    /// The request target (path and query), unredacted: observers redact what they log.
    pub path: String,
    /// The client a trusted reverse proxy named (`--trusted-proxies`), if one did.
    pub forwarded: Option<std::net::IpAddr>,
}

impl<IO> Upgraded<IO> {
    /// The same session over another stream: `f` turns the stream and the leftover into the
    /// ones the relay gets (a sniffer's wrapper handing back the socket, for one).
    pub fn map_client<C>(self, f: impl FnOnce(IO, Bytes) -> (C, Bytes)) -> Upgraded<C> {
        let (client, leftover) = f(self.client, self.leftover);
        Upgraded {
            client,
            leftover,
            target: self.target,
            target_name: self.target_name,
            mode: self.mode,
            path: self.path,
            forwarded: self.forwarded,
        }
    }
}

/// What the service hands the connection when it answers 101.
struct Accepted {
    on_upgrade: OnUpgrade,
    target: Target,
    target_name: String,
    mode: Mode,
    path: String,
    forwarded: Option<std::net::IpAddr>,
}

/// Serves HTTP on `io` until a request becomes a WebSocket (returned) or the connection ends.
pub async fn serve<IO>(io: IO, info: &Arc<ConnInfo>, http: &Arc<Http>) -> Option<Upgraded<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let accepted: Arc<Mutex<Option<Accepted>>> = Arc::default();
    let requests = Arc::new(AtomicU32::new(0));
    let service = {
        let slot = accepted.clone();
        let http = http.clone();
        let info = info.clone();
        service_fn(move |req| {
            let slot = slot.clone();
            let http = http.clone();
            let info = info.clone();
            let n = requests.fetch_add(1, Ordering::Relaxed) + 1;
            async move {
                let mut response = match forwarded_info(&req, &info, &http) {
                    // The request's lines name the client its proxy named.
                    Some(request_info) => {
                        let span = tracing::info_span!("request", forwarded = %request_info.peer);
                        answer(req, &slot, &http, &request_info)
                            .instrument(span)
                            .await
                    }
                    None => answer(req, &slot, &http, &info).await,
                };
                if n >= MAX_REQUESTS {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(http.handshake_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    // Boxed: the HTTP state is large and only needed until the upgrade; inline, it would stay
    // in the connection's task for the whole session.
    let conn = Box::pin(
        builder
            .serve_connection(
                TokioIo::new(SendTimeout::new(io, http.send_timeout)),
                service,
            )
            .with_upgrades(),
    );
    if let Err(err) = conn.await {
        debug!("HTTP connection ended: {err}");
    }
    let accepted = accepted.lock().ok().and_then(|mut slot| slot.take())?;
    let upgraded = match accepted.on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(err) => {
            debug!("upgrade failed: {err}");
            return None;
        }
    };
    let Ok(parts) = upgraded.downcast::<TokioIo<SendTimeout<IO>>>() else {
        warn!("upgraded connection of an unexpected type");
        return None;
    };
    Some(Upgraded {
        // The relay gets the raw stream: no send timeout on a WebSocket session.
        client: parts.io.into_inner().into_inner(),
        // Empty, it would still hold hyper's whole read buffer (8 KiB) for the session's life;
        // the relay drops a non-empty one once it has taken its bytes.
        leftover: if parts.read_buf.is_empty() {
            Bytes::new()
        } else {
            parts.read_buf
        },
        target: accepted.target,
        target_name: accepted.target_name,
        mode: accepted.mode,
        path: accepted.path,
        forwarded: accepted.forwarded,
    })
}

/// The connection as one request sees it when a trusted reverse proxy named its client: the
/// client becomes the peer, the proxy `via`. `None` when the peer is not trusted or names none.
fn forwarded_info<B>(req: &Request<B>, info: &ConnInfo, http: &Http) -> Option<ConnInfo> {
    if http.trusted_proxies.is_empty() {
        return None;
    }
    let peer = info.peer.ip()?;
    if !http.trusted_proxies.iter().any(|e| e.contains_ip(peer)) {
        return None;
    }
    let client = forwarded::client(req.headers(), &http.trusted_proxies)?;
    Some(ConnInfo {
        peer: Addr::Ip(client),
        via: Some(info.peer.clone()),
        ..info.clone()
    })
}

/// Answers one request: a WebSocket upgrade (on any path) goes to [`open_websocket`]; another
/// GET or HEAD to the web server when `--web` is on; anything else gets 405.
async fn answer(
    req: Request<Incoming>,
    slot: &Mutex<Option<Accepted>>,
    http: &Http,
    info: &ConnInfo,
) -> Response<Body> {
    if upgrade::wants_websocket(req.headers()) {
        let path = path_of(&req);
        return match open_websocket(req, slot, http, info).await {
            Ok(response) => response,
            // As the reference: a refused upgrade ends the connection. Whatever the client
            // pipelined behind it (a body, frames) is never read as another request.
            Err(refused) => refusal(&refused, &path),
        };
    }
    let readable = matches!(*req.method(), Method::GET | Method::HEAD);
    let (text, allow) = match &http.site {
        Some(site) if readable => {
            // `--web-auth`: the auth plugin first; a refusal ends the connection, as above
            // (and as the reference, whose refused request raises out of the handler).
            if let Err(err) = http.gate.load().authorize_web(req.headers(), info) {
                return refusal(&Refused::from(err), &path_of(&req));
            }
            return web::serve(site, req.method(), req.uri(), req.headers()).await;
        }
        Some(_) => ("405 Method Not Allowed\n", "GET, HEAD"),
        // Only upgrades are served: a GET without an upgrade is refused too, so advertising
        // `Allow: GET` would send the client round in a circle; name what is missing.
        None => (
            "405 Method Not Allowed: this server only accepts WebSocket connections\n",
            "",
        ),
    };
    debug!(method = %req.method(), path = %request_target(&path_of(&req)), "not a WebSocket request: 405");
    let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, text);
    // RFC 9110 §15.5.6: an empty Allow says no method is allowed on this resource (short of
    // an upgrade, which no method alone gets).
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// Checks the upgrade, asks the gate, connects the target, and answers 101 (leaving the
/// upgrade in `slot`). Any failure is an HTTP answer, decided from the error.
async fn open_websocket(
    mut req: Request<Incoming>,
    slot: &Mutex<Option<Accepted>>,
    http: &Http,
    info: &ConnInfo,
) -> Result<Response<Body>, Refused> {
    let upgrade =
        upgrade::check(req.method(), req.version(), req.headers()).map_err(|refusal| Refused {
            error: Error::new(Side::Client, Kind::BadRequest, refusal.reason()),
            target: None,
            advertise_versions: refusal == upgrade::Refusal::BadVersion,
        })?;
    let gate = http.gate.load_full();
    let spec = gate
        .decide(req.uri(), req.headers(), info)
        .await
        .map_err(Refused::from)?;
    let target_name = spec.to_string();
    let started = std::time::Instant::now();
    let target = match http.connector.connect(&spec, info).await {
        Ok(target) => {
            metrics::target_connect(started.elapsed(), None);
            target
        }
        Err(err) => {
            let error = Error::connect(err);
            metrics::target_connect(started.elapsed(), Some(&error));
            return Err(Refused {
                error,
                target: Some(target_name),
                advertise_versions: false,
            });
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    if let Ok(mut slot) = slot.lock() {
        *slot = Some(Accepted {
            on_upgrade,
            target,
            target_name,
            mode: upgrade.mode,
            path: path_of(&req),
            forwarded: match info.peer {
                Addr::Ip(ip) => Some(ip),
                _ => None,
            },
        });
    }
    Ok(upgrade::switching_protocols(&upgrade))
}

/// Why an upgrade was not answered with 101.
struct Refused {
    error: Error,
    /// The target, when it is the one that failed.
    target: Option<String>,
    /// Answer with the versions we speak (the request's `Sec-WebSocket-Version` was not one).
    advertise_versions: bool,
}

impl From<Error> for Refused {
    fn from(error: Error) -> Self {
        Refused {
            error,
            target: None,
            advertise_versions: false,
        }
    }
}

/// The HTTP answer to a refused request (an upgrade, or a `--web-auth` file), and its one log
/// line. Status, log level, label and any `WWW-Authenticate` challenge come from the error; the
/// body says why in one line (never echoing the client's text); the connection ends.
fn refusal(refused: &Refused, path: &str) -> Response<Body> {
    let err = &refused.error;
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let detail = match &refused.target {
        Some(target) => format!("{err} ({target})"),
        None => err.to_string(),
    };
    crate::observe::log::refusal(err, status.as_u16(), &request_target(path), &detail);
    metrics::refused(err, status.as_u16());
    let reason = match refused.target {
        Some(_) => "Target connection failed",
        None => err.context,
    };
    let text = format!(
        "{} {}: {reason}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut response = plain(status, &text);
    let headers = response.headers_mut();
    if refused.advertise_versions {
        headers.insert("sec-websocket-version", HeaderValue::from_static("13"));
    }
    if let Some(challenge) = err.challenge() {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn path_of<B>(req: &Request<B>) -> String {
    req.uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default()
}

/// A small plain-text answer.
fn plain(status: StatusCode, body: &str) -> Response<Body> {
    let mut response = Response::new(Body::from_bytes(body.to_owned()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
