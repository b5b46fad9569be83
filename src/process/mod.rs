//! process: what concerns the whole process rather than a connection: why it could not start,
//! signals (later: daemonizing, reload on SIGHUP).

use std::io;

use crate::config::cli::CliError;
use crate::tls::TlsError;

/// Why the process stops before serving. `main` has one way out for all of them: [`exit`].
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The command line: a usage error, or the help/version text that was asked for.
    #[error("{0}")]
    Cli(#[from] CliError),
    /// `--cert`/`--key`/`--ssl-version` (the message names the flag and the file).
    #[error("websockify: {0}")]
    Tls(#[from] TlsError),
    /// Binding the listening socket (the message names the address).
    #[error("websockify: {0}")]
    Listen(io::Error),
    /// The async runtime could not be built (out of threads or memory).
    #[error("websockify: cannot start the runtime: {0}")]
    Runtime(io::Error),
    /// The server task itself failed (a bug).
    #[error("websockify: server task failed: {0}")]
    Server(String),
}

impl StartError {
    /// The exit status: 0 after help, 2 for a usage error (as optparse), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Cli(err) => err.exit_code() as u8,
            _ => 1,
        }
    }
}

/// Prints `err` (help on stdout, everything else as one line on stderr) and gives the status
/// the process exits with.
pub fn exit(err: &StartError) -> std::process::ExitCode {
    let code = err.exit_code();
    if code == 0 {
        print!("{err}");
    } else {
        eprintln!("{err}");
    }
    std::process::ExitCode::from(code)
}

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
