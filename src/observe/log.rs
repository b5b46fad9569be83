//! log: the tracing set-up, and the per-session log lines (one when a session opens, one when
//! it ends), written by an observer beside the relay.

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use tracing::{debug, error, info, warn};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use super::json::JsonLayer;
use super::redact::request_target;
use super::syslog::{Syslog, SyslogConfig};
use super::{Ended, Observer, Report, Session};
use crate::error::{Error, Level};

/// `--log-format`: how each log line is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// tracing's plain text, the connection's span (`conn{id=.. peer=..}`) in front.
    #[default]
    Human,
    /// One JSON object a line, with the field names docs/operations.md lists.
    Json,
}

/// Logs to stderr, and to `log_file` (`--log-file`) and `syslog` (`--syslog`) when given, in
/// `format`; `-v` adds debug detail, `RUST_LOG` overrides it. The error names the option that
/// failed. Starts no thread (a `-D` fork may follow).
pub fn init(
    verbose: bool,
    log_file: Option<&Path>,
    syslog: Option<&SyslogConfig>,
    format: LogFormat,
) -> Result<(), String> {
    let default = if verbose { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let file = match log_file {
        Some(path) => {
            let file = LogFile::open(path)
                .map_err(|err| format!("--log-file {}: {err}", path.display()))?;
            let _ = LOG_FILE.set(file.clone());
            Some(file)
        }
        None => None,
    };
    let syslog = match syslog {
        Some(config) => Some(
            Syslog::connect(config).map_err(|err| format!("--syslog {}: {err}", config.dest))?,
        ),
        None => None,
    };
    let _ = FORMAT.set(format);
    if format == LogFormat::Json {
        // The same object everywhere; as a syslog message's body (after the header), it is
        // what rsyslog's mmjsonparse and journald's readers parse.
        let mut sinks = vec![BoxMakeWriter::new(std::io::stderr)];
        sinks.extend(file.map(BoxMakeWriter::new));
        sinks.extend(syslog.map(BoxMakeWriter::new));
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(JsonLayer::new(sinks))
            .try_init();
        return Ok(());
    }
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let file = file.map(|file| {
        tracing_subscriber::fmt::layer()
            .with_writer(file)
            .with_ansi(false)
    });
    // The header has the time, the severity and our name already.
    let syslog = syslog.map(|sink| {
        tracing_subscriber::fmt::layer()
            .with_writer(sink)
            .with_ansi(false)
            .without_time()
            .with_level(false)
            .with_target(false)
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .with(syslog)
        .try_init();
    Ok(())
}

/// The `--log-format` in use: the session's close line has more fields in JSON, where they
/// cost a reader nothing, than in the human line (which stays as it was).
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// The `--log-file`, once opened: what SIGUSR1 reopens.
static LOG_FILE: OnceLock<LogFile> = OnceLock::new();

/// Reopens the `--log-file` at its path (after logrotate moved it away); on failure the old
/// file stays in use and a warning says why. Nothing to do without `--log-file`.
pub fn reopen() {
    let Some(log) = LOG_FILE.get() else { return };
    match log.reopen() {
        Ok(()) => info!("reopened the log file {}", log.0.path.display()),
        Err(err) => warn!(
            "cannot reopen the log file {} (still writing to the old one): {err}",
            log.0.path.display()
        ),
    }
}

/// An appended log file that can be reopened in place.
#[derive(Debug, Clone)]
struct LogFile(Arc<LogFileInner>);

#[derive(Debug)]
struct LogFileInner {
    path: PathBuf,
    file: Mutex<File>,
}

impl LogFile {
    fn open(path: &Path) -> io::Result<LogFile> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(LogFile(Arc::new(LogFileInner {
            path: path.to_owned(),
            file: Mutex::new(file),
        })))
    }

    fn reopen(&self) -> io::Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.0.path)?;
        // Swapped under the lock, logged after it (logging takes the lock).
        *self.0.file.lock().unwrap_or_else(PoisonError::into_inner) = file;
        Ok(())
    }
}

/// One line's hold on the log file: lines from several threads never interleave.
struct LogFileLine<'a>(MutexGuard<'a, File>);

impl Write for LogFileLine<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LogFileLine<'a>;

    fn make_writer(&'a self) -> LogFileLine<'a> {
        LogFileLine(self.0.file.lock().unwrap_or_else(PoisonError::into_inner))
    }
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
        if FORMAT.get() == Some(&LogFormat::Json) {
            let (outcome, code) = outcome(&report.ended);
            return info!(
                duration_ms,
                client_to_target = report.client_to_target,
                target_to_client = report.target_to_client,
                outcome = outcome.as_str(),
                close_code = code,
                "closed: {}",
                report.ended
            );
        }
        info!(
            duration_ms,
            client_to_target = report.client_to_target,
            target_to_client = report.target_to_client,
            "closed: {}",
            report.ended
        );
    }
}

/// How a session ended, as the JSON close line's `outcome` (`client_closed`, `target_closed`
/// or the error's label) and `close_code` (the code the client sent or was sent; none when a
/// client's close frame had no code).
fn outcome(ended: &Ended) -> (String, Option<u16>) {
    match ended {
        Ended::ClientClosed(info) => ("client_closed".to_owned(), info.code),
        Ended::TargetClosed => ("target_closed".to_owned(), Some(1000)),
        Ended::Failed(err) => (err.label(), Some(err.close_code())),
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
