//! The `websockify` binary: parse the reference's command line, set up logging, serve. Every
//! way of failing to start goes out through `websockify::exit`.

use std::process::ExitCode;

use websockify::{cli, Bound, Listener, Prepared, Program, Server, StartError, Supervisor};

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => websockify::exit(&err),
    }
}

fn run() -> Result<ExitCode, StartError> {
    let mut settings = cli::parse_from(std::env::args_os())?;
    // Before the fork: a log file or syslog socket opened here survives it, and a bad one
    // still reaches the terminal.
    websockify::init_logging(
        settings.verbose,
        settings.log_file.as_deref(),
        settings.syslog.as_ref(),
        settings.log_format,
    )
    .map_err(StartError::new)?;
    // While there is one thread: it reads and clears NOTIFY_SOCKET and WATCHDOG_*.
    websockify::init_notify();
    // Everything that can fail is checked here, on the one thread there is, so that a failure
    // reaches the terminal and `-D` can still fork.
    let listener =
        Prepared::bind(&settings.listen, settings.prefer_ipv6).map_err(StartError::new)?;
    // Bound here for the same reasons as the main listener: a port in use fails the start.
    let metrics = settings
        .metrics_listen
        .as_deref()
        .map(websockify::metrics::bind)
        .transpose()
        .map_err(StartError::new)?;
    let program = Program::prepare(&mut settings)?;
    let detach_to = settings
        .daemon
        .then(|| settings.web.clone().unwrap_or_else(|| "/".into()));
    let server = Server::new(settings)?;
    if let Some(dir) = detach_to {
        websockify::daemonize(&dir)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| StartError::new(format!("cannot start the runtime: {err}")))?;
    let served = runtime.block_on(async {
        websockify::reopen_log_on_sigusr1();
        let bound = listener.register().map_err(StartError::new)?;
        if let Some(metrics) = metrics {
            metrics.serve().map_err(StartError::new)?;
        }
        let program = program.map(Program::start).transpose()?;
        // The one dispatch on the kind of listener; the server is generic over it.
        match bound {
            Bound::Tcp(listener) => serve(server, listener, program.as_ref()).await?,
            Bound::Unix(listener) => serve(server, listener, program.as_ref()).await?,
            Bound::Inetd(listener) => serve(server, listener, program.as_ref()).await?,
            Bound::Systemd(listener) => serve(server, listener, program.as_ref()).await?,
        }
        Ok(match program {
            Some(program) => program.stop().await,
            None => ExitCode::SUCCESS,
        })
    });
    // The last recordings get their end mark, the last traffic symbols reach stdout.
    websockify::flush_observers(std::time::Duration::from_secs(5));
    served
}

/// Announces and serves `listener` until a signal, a limit or the wrapped program's exit
/// ends the server.
async fn serve<L: Listener>(
    server: Server,
    listener: L,
    program: Option<&Supervisor>,
) -> Result<(), StartError> {
    websockify::take_over_signals();
    server.announce(&listener);
    // Stop on SIGTERM/SIGINT, or when the wrapped program exits (`--wrap-mode exit`); asked
    // again during the drain, where either ends it at once.
    let exited = program.map(Supervisor::exit_notice);
    let stop = move || {
        // Asked for here, not inside the future: the handlers must exist before READY=1.
        let signalled = websockify::shutdown_signal();
        let exited = exited.as_ref().map(|notice| notice.wait());
        async move {
            match exited {
                Some(exited) => tokio::select! {
                    () = signalled => {}
                    () = exited => {}
                },
                None => signalled.await,
            }
        }
    };
    // On a worker thread, not the main thread (which is no worker): spawning each
    // connection from there would cost a cross-thread wake-up per connection.
    tokio::spawn(server.run(listener, stop, websockify::reload_signal))
        .await
        .map_err(|err| StartError::new(format!("server task failed: {err}")))
}
