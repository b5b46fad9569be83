//! server: the accept loop, its limits, its drain and its reloads. Shared by `main` and the
//! tests: [`Server::run`] takes an already-bound [`Listener`] and the process's requests (stop,
//! reload) as futures. One connection's walk down the pipeline is in `conn`.
//!
//! Drain: a stop request closes the listener at once and moves [`Phase`] to `Draining`; each
//! connection's task sees it, drops a connection still in HTTP, and tells a relaying one to go
//! away (1001 at the next frame boundary, target shut down). After `--drain-timeout`, or at a
//! second stop request, `Stopped` drops whatever is left. With `--drain-grace`, the stop
//! request first turns `/healthz` to 503 and the listener keeps serving for the grace (a load
//! balancer's check notices meanwhile), then the drain begins.

mod conn;
mod limits;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tracing::{debug, error, info, warn, Instrument};

use crate::config::Settings;
use crate::conninfo::ConnInfo;
use crate::error::StartError;
use crate::gate::Gate;
use crate::http::web::Site;
use crate::http::Http;
use crate::listen::proxy::ProxyProtocol;
use crate::listen::{Accepted, Listener};
use crate::observe::{metrics, notify};
use crate::target::Connector;
use crate::tls;
use crate::tls::reload::Reloadable;
use limits::Limits;

/// A configured proxy, ready to serve a listener.
pub struct Server {
    settings: Arc<Settings>,
    tls: Option<Arc<Reloadable>>,
    http: Arc<Http>,
}

impl Server {
    /// Checks what can be checked before serving (the certificate, mainly).
    pub fn new(settings: Settings) -> Result<Server, StartError> {
        let tls = Reloadable::load(&settings)?.map(Arc::new);
        let site = settings
            .web
            .as_deref()
            .map(|dir| Arc::new(Site::new(dir, settings.file_only)));
        let http = Arc::new(Http {
            handshake_timeout: settings.handshake_timeout,
            send_timeout: settings.send_timeout,
            site,
            gate: ArcSwap::from_pointee(Gate::new(&settings)?),
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
        info!("  - Proxying to {}", self.http.gate.load().describe());
        // The reference's wording where a line states the same fact: scripts wait for them.
        match &settings.web {
            Some(dir) if settings.file_only => info!(
                "  - Web server (no directory listings). Web root: {}",
                dir.display()
            ),
            Some(dir) => info!("  - Web server. Web root: {}", dir.display()),
            None => info!("  - No web server"),
        }
        if settings.run_once {
            info!("  - Exiting after one WebSocket session (--run-once)");
        }
        if self.tls.is_some() {
            info!(
                "  - SSL/TLS support, certificate {}",
                settings.cert.display()
            );
            if settings.ssl_only {
                info!("  - Deny non-SSL/TLS connections");
            }
        } else {
            // As the reference: no file name (the default self.pem was never asked for).
            info!("  - No SSL/TLS support (no cert file)");
        }
        if let Some(base) = &settings.record {
            info!("  - Recording to '{}.*'", base.display());
        }
    }

    /// Serves `listener` until a stop request (`stop()` completes; then the sessions drain, see
    /// the module's doc, and a second `stop()` ends the drain at once), or until `--timeout`,
    /// `--idle-timeout` or `--run-once` says to stop (then running sessions finish). Each
    /// `reload()` completing reloads the certificate and the gate; the certificate files are
    /// also watched (`tls::reload`).
    pub async fn run<L, S, SF, R, RF>(self, mut listener: L, mut stop: S, mut reload: R)
    where
        L: Listener,
        S: FnMut() -> SF,
        SF: Future<Output = ()>,
        R: FnMut() -> RF,
        RF: Future<Output = ()>,
    {
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
        let watcher = shared
            .tls
            .clone()
            .map(|tls| tokio::spawn(tls::reload::watch(tls, settings.clone())));
        let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
        let mut activity = shared.activity.subscribe();
        let started = Instant::now();
        // When the last connection ended (None while some are open), for --idle-timeout.
        let mut idle_since = Some(started);
        let shutdown = stop();
        tokio::pin!(shutdown);
        // Boxed: it is made anew after each reload.
        let mut reload_asked = Box::pin(reload());
        metrics::set_listening(true);
        // Bound, certificate and token sources checked, sessions accepted from here on.
        notify::ready(&format!("listening on {}", listener.describe()));
        let watchdog = notify::watchdog();
        // Set by a stop request under `--drain-grace`: until then the listener still accepts.
        let mut grace_until: Option<Instant> = None;
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
                () = &mut shutdown => {
                    if grace_until.is_some() || settings.drain_grace.is_zero() {
                        break true;
                    }
                    // Load balancers see 503 and stop sending; whoever they still send (until
                    // their next check) is served, not refused.
                    metrics::set_listening(false);
                    info!(
                        "stopping: still accepting for {}s while /healthz says 503 \
                         (--drain-grace; a second signal ends it)",
                        settings.drain_grace.as_secs()
                    );
                    // systemd too: the stop has begun (a reload in the grace sends no READY).
                    notify::stopping(&format!(
                        "stopping: accepting for {}s more (--drain-grace)",
                        settings.drain_grace.as_secs()
                    ));
                    grace_until = Some(Instant::now() + settings.drain_grace);
                    shutdown.set(stop());
                }
                () = sleep_until(grace_until) => break true,
                () = &mut reload_asked => {
                    reload_asked = Box::pin(reload());
                    let shared = shared.clone();
                    notify::reloading();
                    // Off the accept loop: it reads files (and may open a token backend).
                    let reloaded = tokio::task::spawn_blocking(move || shared.reload());
                    tokio::spawn(async move {
                        let _ = reloaded.await;
                        notify::ready("reloaded");
                    });
                    continue;
                }
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
                        let phase = phase_rx.clone();
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
                            serve_until_stopped(stream, info, &shared, phase).await;
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
        // A stop request in the grace wins over a --timeout or --run-once in it.
        let interrupted = interrupted || grace_until.is_some();
        // From here on (a drain included) `/healthz` says 503: load balancers stop sending.
        metrics::set_listening(false);
        drop(listener);
        let open = activity.borrow().connections;
        notify::stopping(&format!("stopping: {open} connections open"));
        if interrupted {
            let drain = shared.settings.drain_timeout;
            let open = activity.borrow().connections;
            info!(
                "stopping: {open} connections get up to {}s to close (a second signal ends them \
                 at once)",
                drain.as_secs()
            );
            let _ = phase_tx.send(Phase::Draining);
            let second = stop();
            tokio::select! {
                _ = activity.wait_for(|a| a.connections == 0) => {}
                () = tokio::time::sleep(drain) => {
                    let left = shared.activity.borrow().connections;
                    info!("drain time over (--drain-timeout): dropping {left} connections");
                }
                () = second => {
                    let left = shared.activity.borrow().connections;
                    info!("second signal: dropping {left} connections");
                }
            }
            let _ = phase_tx.send(Phase::Stopped);
        }
        // Wait for sessions to end: at once when interrupted, naturally otherwise.
        let _ = activity.wait_for(|a| a.connections == 0).await;
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
    }
}

/// Where the server is in its life, for every connection's task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Serving,
    /// Stop accepting, close every session (1001), drop connections still in HTTP.
    Draining,
    /// The drain is over: drop everything.
    Stopped,
}

/// What a connection's task and its relay share about a drain.
#[derive(Default)]
struct DrainFlags {
    /// The connection reached the relay (a drain then closes it properly).
    relaying: AtomicBool,
    /// The server is going away: the relay closes at its next wake-up.
    going_away: AtomicBool,
}

/// Serves one connection, watching `phase`: a drain drops it if it is not a WebSocket session
/// yet, and tells its relay to close if it is; the end of the drain drops it.
async fn serve_until_stopped<S: crate::listen::Stream>(
    stream: S,
    info: Box<ConnInfo>,
    shared: &Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
) {
    let flags = DrainFlags::default();
    let serve = conn::serve(stream, info, shared, &flags);
    tokio::pin!(serve);
    loop {
        tokio::select! {
            () = &mut serve => return,
            changed = phase.changed() => {
                let now = *phase.borrow_and_update();
                if changed.is_err() || now == Phase::Stopped {
                    return debug!("ended by shutdown");
                }
                if now == Phase::Draining {
                    if !flags.relaying.load(Ordering::Relaxed) {
                        return debug!("ended by shutdown before becoming a WebSocket");
                    }
                    // The relay sees it when polled: the next round of this loop polls it.
                    flags.going_away.store(true, Ordering::Relaxed);
                }
            }
        }
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
    /// The TLS configuration, swapped on reload (None: no TLS).
    tls: Option<Arc<Reloadable>>,
    http: Arc<Http>,
    /// `--proxy-protocol`: the balancers whose PROXY header is read first.
    proxy_protocol: Option<ProxyProtocol>,
    /// `--max-connections`, `--max-connections-per-ip`, `--handshake-rate`.
    limits: Option<Arc<Limits>>,
    next_id: AtomicU64,
    activity: watch::Sender<Activity>,
}

impl Shared {
    /// Reloads the certificate and rebuilds the gate (token and auth sources) from the same
    /// settings; what fails keeps the old one and says so. Sessions running are untouched.
    /// Blocking.
    fn reload(&self) {
        info!("reloading (SIGHUP): certificate, token and auth sources");
        if let Some(tls) = &self.tls {
            tls.reload(&self.settings);
        }
        match Gate::new(&self.settings) {
            Ok(gate) => {
                info!(
                    "token and auth sources reloaded: proxying to {}",
                    gate.describe()
                );
                self.http.gate.store(Arc::new(gate));
            }
            Err(err) => {
                let message = err.message.trim_start_matches("websockify: ");
                error!("token and auth reload failed, keeping the previous ones: {message}");
            }
        }
    }
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
        crate::observe::metrics::connection_accepted();
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
        crate::observe::metrics::connection_closed();
        self.0.activity.send_if_modified(|a| {
            a.connections -= 1;
            a.connections == 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Listen, TargetSpec};

    fn settings() -> Settings {
        Settings::new(
            Listen::Tcp {
                host: "127.0.0.1".into(),
                port: 0,
            },
            TargetSpec::Tcp {
                host: "127.0.0.1".into(),
                port: 1,
            },
        )
    }

    /// The start-up summary has a line for each thing served and none for what is not:
    /// scripts wait for the reference's wording.
    #[tokio::test]
    async fn the_start_up_summary_says_what_is_served_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("wsfy-announce-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pem = dir.join("server.pem");
        std::fs::write(&pem, format!("{}{}", cert.pem(), key.serialize_pem())).unwrap();
        let listener = crate::listen::tcp::bind("127.0.0.1", 0, false)
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().to_string();
        let summary = |settings: Settings| {
            let server = Server::new(settings).unwrap();
            crate::gate::token::logged(|| server.announce(&listener)).1
        };

        let plain = summary(settings());
        for line in [
            "WebSocket server settings:",
            &format!("  - Listen on {port}"),
            "  - Proxying to ",
            "  - No web server",
            "  - No SSL/TLS support (no cert file)",
        ] {
            assert!(plain.contains(line), "{line:?} in {plain}");
        }
        for absent in ["Web server", "--run-once", "Recording", "Deny"] {
            assert!(!plain.contains(absent), "{absent:?} in {plain}");
        }

        let mut all = settings();
        all.web = Some(dir.clone());
        all.run_once = true;
        all.record = Some(dir.join("session"));
        all.cert = pem.clone();
        all.cert_given = true;
        all.ssl_only = true;
        let everything = summary(all);
        for line in [
            format!("  - Web server. Web root: {}", dir.display()),
            "  - Exiting after one WebSocket session (--run-once)".to_owned(),
            format!("  - Recording to '{}.*'", dir.join("session").display()),
            format!("  - SSL/TLS support, certificate {}", pem.display()),
            "  - Deny non-SSL/TLS connections".to_owned(),
        ] {
            assert!(everything.contains(&line), "{line:?} in {everything}");
        }
        assert!(!everything.contains("No "), "{everything}");

        let mut file_only = settings();
        file_only.web = Some(dir.clone());
        file_only.file_only = true;
        file_only.cert = pem.clone();
        file_only.cert_given = true;
        let text = summary(file_only);
        let line = format!(
            "  - Web server (no directory listings). Web root: {}",
            dir.display()
        );
        assert!(text.contains(&line), "{line:?} in {text}");
        assert!(text.contains("SSL/TLS support, certificate"), "{text}");
        assert!(!text.contains("Deny"), "without --ssl-only: {text}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
