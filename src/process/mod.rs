//! process: what concerns the whole process rather than a connection: the way out when it cannot start,
//! signals (later: daemonizing, reload on SIGHUP).

use crate::error::StartError;

/// Prints `err` (help on stdout, everything else as one line on stderr) and gives the status
/// the process exits with.
pub fn exit(err: &StartError) -> std::process::ExitCode {
    let code = err.code;
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

/// Completes on SIGHUP: the server then reloads its certificate and its token and auth
/// sources. Installing the handler also keeps SIGHUP from killing the process (its default).
pub async fn reload_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(mut hangup) => {
            hangup.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
