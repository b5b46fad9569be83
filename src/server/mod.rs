//! server: the accept loop, its limits and its drain. Shared by `main` and the tests:
//! [`Server::run`] takes an already-bound [`Listener`] and a shutdown future. One connection's
//! walk down the pipeline is in `conn`.

mod conn;
mod limits;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn, Instrument};

use crate::config::Settings;
use crate::conninfo::ConnInfo;
use crate::error::StartError;
use crate::gate::Gate;
use crate::http::web::Site;
use crate::http::Http;
use crate::listen::proxy::ProxyProtocol;
use crate::listen::{Accepted, Listener};
use crate::target::Connector;
use crate::tls;
use limits::Limits;

/// A configured proxy, ready to serve a listener.
pub struct Server {
    settings: Arc<Settings>,
    tls: Option<TlsAcceptor>,
    http: Arc<Http>,
}

impl Server {
    /// Checks what can be checked before serving (the certificate, mainly).
    pub fn new(settings: Settings) -> Result<Server, StartError> {
        let tls = tls::load(&settings)?.map(TlsAcceptor::from);
        let site = settings
            .web
            .as_deref()
            .map(|dir| Arc::new(Site::new(dir, settings.file_only)));
        let http = Arc::new(Http {
            handshake_timeout: settings.handshake_timeout,
            send_timeout: settings.send_timeout,
            site,
            gate: Gate::new(&settings)?,
            connector: Connector::new(
                tls::target_client(&settings)?,
                settings.target_proxy_protocol,
            ),
            trusted_proxies: settings.trusted_proxies.clone(),
        });
        Ok(Server {
            settings: Arc::new(settings),
            tls,
            http,
        })
    }

    /// The reference's start-up summary, for a server about to serve `listener`.
    pub fn announce(&self, listener: &impl Listener) {
        let settings = &self.settings;
        info!("WebSocket server settings:");
        info!("  - Listen on {}", listener.describe());
        info!("  - Proxying to {}", self.http.gate.describe());
        match &settings.web {
            Some(dir) if settings.file_only => info!(
                "  - Web server (no directory listings), web root: {}",
                dir.display()
            ),
            Some(dir) => info!("  - Web server, web root: {}", dir.display()),
            None => info!("  - No web server"),
        }
        if settings.run_once {
            info!("  - Exiting after one WebSocket session (--run-once)");
        }
        if settings.ssl_only {
            info!(
                "  - SSL/TLS only (wss://), certificate {}",
                settings.cert.display()
            );
        } else if self.tls.is_some() {
            info!(
                "  - SSL/TLS support (ws:// and wss://), certificate {}",
                settings.cert.display()
            );
        } else {
            // As the reference: no file name (the default self.pem was never asked for).
            info!("  - No SSL/TLS support (no cert file)");
        }
    }

    /// Serves `listener` until `shutdown` completes (then every session ends at once), or until
    /// `--timeout`, `--idle-timeout` or `--run-once` says to stop (then running sessions finish).
    pub async fn run<L: Listener>(self, mut listener: L, shutdown: impl Future<Output = ()>) {
        let settings = self.settings.clone();
        let shared = Arc::new(Shared {
            settings: self.settings,
            tls: self.tls,
            http: self.http,
            proxy_protocol: ProxyProtocol::new(&settings.proxy_protocol),
            limits: Limits::new(
                settings.max_connections,
                settings.max_connections_per_ip,
                settings.handshake_rate,
            ),
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
                    Ok(Accepted { stream, peer, local }) => {
                        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
                        let guard = ConnectionGuard::new(&shared);
                        let mut stop = stop_rx.clone();
                        let shared = shared.clone();
                        // `client`: the real client, once a PROXY header names one;
                        // `forwarded`: the one a trusted reverse proxy named for the session.
                        let span = tracing::info_span!(
                            "conn",
                            id,
                            %peer,
                            client = tracing::field::Empty,
                            forwarded = tracing::field::Empty
                        );
                        let info = Box::new(ConnInfo { id, peer, via: None, local, tls: None });
                        tokio::spawn(async move {
                            tokio::select! {
                                () = conn::serve(stream, info, &shared) => {}
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

/// What every connection task shares.
struct Shared {
    settings: Arc<Settings>,
    tls: Option<TlsAcceptor>,
    http: Arc<Http>,
    /// `--proxy-protocol`: the balancers whose PROXY header is read first.
    proxy_protocol: Option<ProxyProtocol>,
    /// `--max-connections`, `--max-connections-per-ip`, `--handshake-rate`.
    limits: Option<Arc<Limits>>,
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
