//! websockify: a WebSocket-to-TCP bridge, drop-in for the Python reference.
//!
//! A connection's path through the crate, in order: `listen` → `classify` (first bytes) →
//! `tls` → `http` upgrade (`server`, `handshake`) → `target` → `relay` (frames ↔ bytes, with
//! `frame`, `utf8`, `base64` and `pool`). Other GET/HEAD requests go to `web` (`--web DIR`);
//! HTTP responses are written under `stall`'s send timeout; a Flash policy request is answered
//! right after `classify`. `cli` turns the command line into `settings`.

pub mod base64;
pub mod classify;
pub mod cli;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod listen;
pub mod logging;
pub mod pool;
pub mod relay;
pub mod server;
pub mod settings;
pub mod stall;
pub mod target;
pub mod tls;
pub mod utf8;
pub mod web;

/// Completes on SIGINT or SIGTERM: both end the server and its sessions, as the reference.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    match (term, interrupt) {
        (Ok(mut term), Ok(mut interrupt)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
        // Without signal handlers the process still dies on the default action.
        _ => std::future::pending().await,
    }
}
