//! logging: tracing set-up, and the start-up lines users of the reference look for.

use std::io::IsTerminal;

use tokio::net::TcpListener;
use tracing::info;
use tracing_subscriber::EnvFilter;

use crate::settings::Settings;

/// Logs to stderr; `-v` adds debug detail. `RUST_LOG` overrides both.
pub fn init(verbose: bool) {
    let default = if verbose { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// The reference's start-up summary.
pub fn announce(settings: &Settings, listener: &TcpListener) {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    info!("WebSocket server settings:");
    info!("  - Listen on {addr}");
    info!("  - Proxying to {}", settings.target);
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
    } else if settings.cert.exists() {
        info!(
            "  - SSL/TLS support (ws:// and wss://), certificate {}",
            settings.cert.display()
        );
    } else {
        info!(
            "  - No SSL/TLS support (no cert file {})",
            settings.cert.display()
        );
    }
}
