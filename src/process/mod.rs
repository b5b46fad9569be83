//! process: what concerns the whole process rather than a connection: the way out when it cannot start,
//! signals, detaching (`daemon`), the wrapped program (`wrap`) (later: reload on SIGHUP).

pub mod daemon;
pub mod wrap;

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

/// Takes SIGHUP, SIGTERM and SIGINT over from their default action (the end of the process)
/// at once: the server's own signal streams are made when its accept loop first runs, after it
/// may have told systemd READY=1, and systemd may send its `ExecReload` SIGHUP right then. A
/// handler, once installed, stays for the life of the process; a signal that comes before the
/// streams exist is ignored rather than fatal.
pub fn take_over_signals() {
    use tokio::signal::unix::{signal, SignalKind};
    for kind in [
        SignalKind::hangup(),
        SignalKind::terminate(),
        SignalKind::interrupt(),
    ] {
        let _ = signal(kind);
    }
}

/// Completes on SIGINT or SIGTERM: both end the server and its sessions, as the reference.
/// The handlers are in place when this returns, not when the future is first polled: the
/// server calls it before telling systemd READY=1, and a signal sent right after that must
/// not fall between the two (after [`take_over_signals`] it would be ignored, lost).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
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
}

/// Reopens the `--log-file` on every SIGUSR1, as logrotate's `postrotate` expects. Must be
/// called inside the runtime. With the handler in place SIGUSR1 no longer ends the process.
pub fn reopen_log_on_sigusr1() {
    use tokio::signal::unix::{signal, SignalKind};
    if let Ok(mut usr1) = signal(SignalKind::user_defined1()) {
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                crate::observe::log::reopen();
            }
        });
    }
}

/// Completes on SIGHUP: the server then reloads its certificate and its token and auth
/// sources. Installing the handler also keeps SIGHUP from killing the process (its default).
/// Installed when this returns, as [`shutdown_signal`]'s: systemd's `ExecReload` may send
/// SIGHUP the moment it reads READY=1.
pub fn reload_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let hangup = signal(SignalKind::hangup());
    async move {
        match hangup {
            Ok(mut hangup) => {
                hangup.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHILD: &str = "WEBSOCKIFY_TEST_SIGNAL_CHILD";

    /// Runs `body` in a child copy of this test binary (`test` is the calling test's name)
    /// and returns the child's exit status; in the child itself runs `body` and returns None.
    fn in_child<F: std::future::Future<Output = ()>>(
        test: &str,
        body: impl FnOnce() -> F,
    ) -> Option<std::process::ExitStatus> {
        if std::env::var_os(CHILD).is_some() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(body());
            return None;
        }
        let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                &format!("process::tests::{test}"),
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run the child");
        Some(status)
    }

    fn raise(signal: rustix::process::Signal) {
        rustix::process::kill_process(rustix::process::getpid(), signal).expect("signal ourselves")
    }

    /// Without the take-over, SIGHUP's default action ends the process. Run in a child copy of
    /// this test binary: the take-over lasts for the life of a process, and a test binary that
    /// ignores SIGTERM outlives the timeouts of its runners (cargo-mutants' SIGTERM left such
    /// binaries spinning for half an hour).
    #[test]
    fn after_the_take_over_a_sighup_does_not_end_the_process() {
        let test = "after_the_take_over_a_sighup_does_not_end_the_process";
        let child = in_child(test, || async {
            take_over_signals();
            raise(rustix::process::Signal::HUP);
            // Delivered at once; give it a moment to act.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        });
        if let Some(status) = child {
            assert!(status.success(), "the child died of the SIGHUP: {status:?}");
        }
    }

    /// A signal sent after `reload_signal()` or `shutdown_signal()` returned, before its
    /// future is first polled, is seen (the server asks for both, then says READY=1, then
    /// polls them). In a child copy of this test binary, for the same reasons as above; with
    /// no handler yet the signal's default action ends the child.
    #[test]
    fn a_signal_sent_before_the_first_poll_is_seen() {
        let child = in_child("a_signal_sent_before_the_first_poll_is_seen", || async {
            let bound = std::time::Duration::from_secs(5);
            let reload = reload_signal();
            raise(rustix::process::Signal::HUP);
            tokio::time::timeout(bound, reload)
                .await
                .expect("the SIGHUP sent before the first poll was lost");
            let shutdown = shutdown_signal();
            raise(rustix::process::Signal::TERM);
            tokio::time::timeout(bound, shutdown)
                .await
                .expect("the SIGTERM sent before the first poll was lost");
        });
        if let Some(status) = child {
            assert!(status.success(), "the child missed a signal: {status:?}");
        }
    }
}
