//! metrics: `--metrics-listen ADDR`, Prometheus metrics (OpenMetrics text, by
//! `prometheus-client`) and `/healthz` on an address of their own.
//!
//! An observer, and a cheap one: without `--metrics-listen` nothing is registered and every
//! hook is one load of an empty `OnceLock`. With it, counters and gauges are atomics; the
//! label families and histograms take a short lock once per connection, session or lookup,
//! never per byte: bytes are added from the relay's own totals when a session ends (so
//! `websockify_bytes_total` moves at session end, not while a session runs).
//!
//! Every metric name is listed in [`NAMES`] and documented in `docs/operations.md` (a test
//! checks both against a scrape).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::{Ended, Observer, Report, Session};
use crate::error::Error;

/// Every metric name a scrape shows (as exposed, with the `_total`, `_info` and histogram
/// suffixes), for the documentation test.
pub const NAMES: &[&str] = &[
    "websockify_build_info",
    "websockify_connections_accepted_total",
    "websockify_connections_active",
    "websockify_connections_closed_total",
    "websockify_sessions_total",
    "websockify_sessions_closed_total",
    "websockify_handshake_refusals_total",
    "websockify_bytes_total",
    "websockify_session_duration_seconds",
    "websockify_target_connect_duration_seconds",
    "websockify_target_connect_failures_total",
    "websockify_token_lookups_total",
];

/// Scrape connections served at once; more wait in the kernel's backlog.
pub const MAX_SCRAPERS: usize = 16;
/// How long a scrape connection may take, from accept to the last byte of the answer.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a scraper may take to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The most a scraper's request head may use (hyper's smallest allowed buffer).
pub const MAX_HEAD_BYTES: usize = 8192;

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// Whether the proxy's listener accepts connections: what `/healthz` reports.
static LISTENING: AtomicBool = AtomicBool::new(false);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabel {
    transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    plugin: &'static str,
    result: String,
}

struct Metrics {
    registry: Registry,
    accepted: Counter,
    active: Gauge,
    closed: Counter,
    sessions: Family<TransportLabel, Counter>,
    sessions_closed: Family<OutcomeLabel, Counter>,
    refusals: Family<RefusalLabels, Counter>,
    client_to_target: Counter,
    target_to_client: Counter,
    session_duration: Histogram,
    connect_duration: Histogram,
    connect_failures: Family<ReasonLabel, Counter>,
    token_lookups: Family<LookupLabels, Counter>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("websockify");
        registry.register(
            "build",
            "The running build (value 1)",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let accepted = Counter::default();
        registry.register(
            "connections_accepted",
            "Connections accepted on the listener",
            accepted.clone(),
        );
        let active = Gauge::default();
        registry.register(
            "connections_active",
            "Connections open now (sessions and handshakes)",
            active.clone(),
        );
        let closed = Counter::default();
        registry.register(
            "connections_closed",
            "Connections ended, whatever became of them",
            closed.clone(),
        );
        let sessions = Family::default();
        registry.register(
            "sessions",
            "WebSocket sessions opened, by transport (tls or plain)",
            sessions.clone(),
        );
        let sessions_closed = Family::default();
        registry.register(
            "sessions_closed",
            "WebSocket sessions ended, by outcome (client_closed, target_closed or the error label)",
            sessions_closed.clone(),
        );
        let refusals = Family::default();
        registry.register(
            "handshake_refusals",
            "Upgrade requests refused, by reason (the error label) and HTTP status",
            refusals.clone(),
        );
        let bytes: Family<DirectionLabel, Counter> = Family::default();
        registry.register(
            "bytes",
            "Payload bytes relayed, by direction, added when a session ends",
            bytes.clone(),
        );
        let session_duration = Histogram::new(exponential_buckets(0.1, 4.0, 10));
        registry.register(
            "session_duration_seconds",
            "How long WebSocket sessions lasted",
            session_duration.clone(),
        );
        let connect_duration = Histogram::new(exponential_buckets(0.0005, 4.0, 10));
        registry.register(
            "target_connect_duration_seconds",
            "How long connecting to targets took, successful or not",
            connect_duration.clone(),
        );
        let connect_failures = Family::default();
        registry.register(
            "target_connect_failures",
            "Target connections that failed, by reason (the error label)",
            connect_failures.clone(),
        );
        let token_lookups = Family::default();
        registry.register(
            "token_lookups",
            "Token lookups, by plugin and result (found, unknown or the error label)",
            token_lookups.clone(),
        );
        let direction = |direction| bytes.get_or_create(&DirectionLabel { direction }).clone();
        Metrics {
            registry: root,
            accepted,
            active,
            closed,
            sessions,
            sessions_closed,
            refusals,
            client_to_target: direction("client_to_target"),
            target_to_client: direction("target_to_client"),
            session_duration,
            connect_duration,
            connect_failures,
            token_lookups,
        }
    }
}

fn metrics() -> Option<&'static Metrics> {
    METRICS.get()
}

/// A connection was accepted (and is open until [`connection_closed`]).
pub fn connection_accepted() {
    if let Some(m) = metrics() {
        m.accepted.inc();
        m.active.inc();
    }
}

/// A connection counted by [`connection_accepted`] ended.
pub fn connection_closed() {
    if let Some(m) = metrics() {
        m.closed.inc();
        m.active.dec();
    }
}

/// An upgrade request was refused with `status` because of `err`.
pub fn refused(err: &Error, status: u16) {
    if let Some(m) = metrics() {
        m.refusals
            .get_or_create(&RefusalLabels {
                reason: err.label(),
                status,
            })
            .inc();
    }
}

/// A target connection attempt that took `took` ended, failing with `failed` if it did.
pub fn target_connect(took: Duration, failed: Option<&Error>) {
    if let Some(m) = metrics() {
        m.connect_duration.observe(took.as_secs_f64());
        if let Some(err) = failed {
            m.connect_failures
                .get_or_create(&ReasonLabel {
                    reason: err.label(),
                })
                .inc();
        }
    }
}

/// Token plugin `plugin` was asked, and found a target (`Ok(true)`), did not know the token
/// (`Ok(false)`) or failed.
pub fn token_lookup(plugin: &'static str, result: Result<bool, &Error>) {
    if let Some(m) = metrics() {
        let result = match result {
            Ok(true) => "found".to_owned(),
            Ok(false) => "unknown".to_owned(),
            Err(err) => err.label(),
        };
        m.token_lookups
            .get_or_create(&LookupLabels { plugin, result })
            .inc();
    }
}

/// HOOK for the listener's life, `/healthz`'s answer: the server calls it with `true` when
/// it starts accepting and with `false` the moment it stops (a signal, a limit): from then
/// on, through any drain of running sessions, `/healthz` answers 503 so that load balancers
/// stop sending.
pub fn set_listening(listening: bool) {
    LISTENING.store(listening, Ordering::Relaxed);
}

/// One session's metrics: its transport when it opens; its outcome, bytes and duration when
/// it ends.
#[derive(Debug)]
pub struct SessionMetrics {
    started: Instant,
}

impl SessionMetrics {
    /// `None` without `--metrics-listen`: the session then carries nothing for metrics.
    pub fn start() -> Option<SessionMetrics> {
        metrics().map(|_| SessionMetrics {
            started: Instant::now(),
        })
    }
}

impl Observer for SessionMetrics {
    fn open(&mut self, session: &Session<'_>) {
        if let Some(m) = metrics() {
            let transport = if session.info.tls.is_some() {
                "tls"
            } else {
                "plain"
            };
            m.sessions
                .get_or_create(&TransportLabel { transport })
                .inc();
        }
    }

    fn close(&mut self, report: &Report) {
        let Some(m) = metrics() else { return };
        let outcome = match &report.ended {
            Ended::ClientClosed(_) => "client_closed".to_owned(),
            Ended::TargetClosed => "target_closed".to_owned(),
            Ended::Failed(err) => err.label(),
        };
        m.sessions_closed
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
        m.client_to_target.inc_by(report.client_to_target);
        m.target_to_client.inc_by(report.target_to_client);
        m.session_duration
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// The metrics listener, bound (before `-D` forks, as the main listener) but not yet served.
#[derive(Debug)]
pub struct Endpoint {
    listener: std::net::TcpListener,
    addr: String,
}

/// Binds `addr` (HOST:PORT) for metrics and turns metrics on. The error names the option.
pub fn bind(addr: &str) -> Result<Endpoint, String> {
    let fail = |err: std::io::Error| format!("--metrics-listen {addr}: {err}");
    let listener = std::net::TcpListener::bind(addr).map_err(fail)?;
    listener.set_nonblocking(true).map_err(fail)?;
    let _ = METRICS.set(Metrics::new());
    Ok(Endpoint {
        listener,
        addr: addr.to_owned(),
    })
}

impl Endpoint {
    /// Serves metrics and `/healthz` on the current runtime until the process ends.
    pub fn serve(self) -> Result<(), String> {
        let listener = tokio::net::TcpListener::from_std(self.listener)
            .map_err(|err| format!("--metrics-listen {}: {err}", self.addr))?;
        if let Ok(local) = listener.local_addr() {
            info!("  - Metrics on http://{local}/metrics, health check on /healthz");
        }
        tokio::spawn(accept_loop(listener));
        Ok(())
    }
}

async fn accept_loop(listener: tokio::net::TcpListener) {
    let slots = Arc::new(Semaphore::new(MAX_SCRAPERS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                warn!("metrics: accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .keep_alive(false);
            let conn = builder.serve_connection(TokioIo::new(stream), service_fn(answer));
            match tokio::time::timeout(SCRAPE_TIMEOUT, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => debug!("metrics: {err}"),
                Err(_) => debug!("metrics: scrape not done within {SCRAPE_TIMEOUT:?}"),
            }
            drop(permit);
        });
    }
}

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(route(req.method(), req.uri().path()))
}

/// The one answer to each request: GET /metrics, GET /healthz, nothing else.
fn route(method: &Method, path: &str) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    let (status, content_type, body) = match path {
        "/metrics" | "/healthz" if method != Method::GET => {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, TEXT, "GET only\n".into());
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
            return response;
        }
        "/metrics" => match encode() {
            Some(text) => (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text,
            ),
            None => (
                StatusCode::INTERNAL_SERVER_ERROR,
                TEXT,
                "cannot encode\n".into(),
            ),
        },
        "/healthz" if LISTENING.load(Ordering::Relaxed) => (StatusCode::OK, TEXT, "ok\n".into()),
        "/healthz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            "not listening\n".into(),
        ),
        _ => (StatusCode::NOT_FOUND, TEXT, "not found\n".into()),
    };
    plain(status, content_type, body)
}

fn plain(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn encode() -> Option<String> {
    let m = metrics()?;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &m.registry).ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_of_two_paths_is_served() {
        assert_eq!(
            route(&Method::POST, "/metrics").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            route(&Method::GET, "/other").status(),
            StatusCode::NOT_FOUND
        );
        set_listening(false);
        assert_eq!(
            route(&Method::GET, "/healthz").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
