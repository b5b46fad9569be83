//! log: the tracing set-up, and the per-session log lines (one when a session opens, one when
//! it ends), written by an observer beside the relay.

use std::io::IsTerminal;
use std::time::Instant;

use tracing::{debug, error, info, warn};
use tracing_subscriber::EnvFilter;

use super::redact::request_target;
use super::{Observer, Report, Session};
use crate::error::{Error, Level};

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

/// Logs a session's start (scheme, path with secrets redacted, target) and its end (duration,
/// bytes each way, how it ended). The connection's span adds its id and peer.
#[derive(Debug, Default)]
pub struct SessionLog {
    began: Option<Instant>,
}

impl Observer for SessionLog {
    fn open(&mut self, session: &Session<'_>) {
        self.began = Some(Instant::now());
        info!(
            scheme = %session.info.scheme(),
            path = %request_target(session.path),
            target = %session.target,
            "WebSocket connection"
        );
    }

    fn close(&mut self, report: &Report) {
        let duration_ms = self
            .began
            .map_or(0, |began| began.elapsed().as_millis() as u64);
        info!(
            duration_ms,
            client_to_target = report.client_to_target,
            target_to_client = report.target_to_client,
            "closed: {}",
            report.ended
        );
    }
}

/// The one line for a request refused before the 101, at the level the error decides.
/// `path` must already be redacted and quoted.
pub fn refusal(err: &Error, status: u16, path: &str, detail: &str) {
    let label = err.label();
    match err.level() {
        Level::Debug => debug!(status, %path, %label, "refused: {detail}"),
        Level::Info => info!(status, %path, %label, "refused: {detail}"),
        Level::Warn => warn!(status, %path, %label, "refused: {detail}"),
        Level::Error => error!(status, %path, %label, "refused: {detail}"),
    }
}

/// A connection that failed before it became a session, at the level the error decides.
pub fn failure(err: &Error) {
    let label = err.label();
    match err.level() {
        Level::Debug => debug!(%label, "{err}"),
        Level::Info => info!(%label, "{err}"),
        Level::Warn => warn!(%label, "{err}"),
        Level::Error => error!(%label, "{err}"),
    }
}
