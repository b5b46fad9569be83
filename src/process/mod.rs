//! process: what concerns the whole process rather than a connection: signals (later:
//! daemonizing, reload on SIGHUP).

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
