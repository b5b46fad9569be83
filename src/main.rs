//! The `websockify` binary: parse the reference's command line, set up logging, serve. Every
//! way of failing to start goes out through `websockify::exit`.

use std::process::ExitCode;

use websockify::{cli, Bound, Listener, Server, StartError};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => websockify::exit(&err),
    }
}

fn run() -> Result<(), StartError> {
    let settings = cli::parse_from(std::env::args_os())?;
    websockify::init_logging(settings.verbose);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| StartError::new(format!("cannot start the runtime: {err}")))?;
    runtime.block_on(async {
        let bound = websockify::bind(&settings.listen, settings.prefer_ipv6)
            .await
            .map_err(StartError::new)?;
        let server = Server::new(settings)?;
        // The one dispatch on the kind of listener; the server is generic over it.
        match bound {
            Bound::Tcp(listener) => serve(server, listener).await,
            Bound::Unix(listener) => serve(server, listener).await,
            Bound::Inetd(listener) => serve(server, listener).await,
        }
    })
}

/// Announces and serves `listener` until a signal or a limit ends the server.
async fn serve<L: Listener>(server: Server, listener: L) -> Result<(), StartError> {
    server.announce(&listener);
    // On a worker thread, not the main thread (which is no worker): spawning each
    // connection from there would cost a cross-thread wake-up per connection.
    let (stop, reload) = (websockify::shutdown_signal, websockify::reload_signal);
    tokio::spawn(server.run(listener, stop, reload))
        .await
        .map_err(|err| StartError::new(format!("server task failed: {err}")))
}
