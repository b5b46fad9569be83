//! The `websockify` binary: parse the reference's command line, set up logging, serve. Every
//! way of failing to start goes out through `websockify::exit`.

use std::process::ExitCode;

use websockify::{cli, Server, StartError};

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
        let listener = websockify::bind(&settings.listen, settings.prefer_ipv6)
            .await
            .map_err(StartError::new)?;
        let server = Server::new(settings)?;
        server.announce(&listener);
        // On a worker thread, not the main thread (which is no worker): spawning each
        // connection from there would cost a cross-thread wake-up per connection.
        tokio::spawn(server.run(listener, websockify::shutdown_signal()))
            .await
            .map_err(|err| StartError::new(format!("server task failed: {err}")))
    })
}
