//! The `websockify` binary: parse the reference's command line, set up logging, serve.

use std::process::ExitCode;

use websockify::{cli, Server};

fn main() -> ExitCode {
    let settings = match cli::parse_from(std::env::args_os()) {
        Ok(settings) => settings,
        Err(err) => {
            let code = err.exit_code();
            if code == 0 {
                print!("{err}");
            } else {
                eprintln!("{err}");
            }
            return ExitCode::from(code as u8);
        }
    };
    websockify::init_logging(settings.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("websockify: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match websockify::bind(&settings.listen, settings.prefer_ipv6).await {
            Ok(listener) => listener,
            Err(err) => {
                eprintln!("websockify: {err}");
                return ExitCode::FAILURE;
            }
        };
        let server = match Server::new(settings) {
            Ok(server) => server,
            Err(err) => {
                eprintln!("websockify: {err}");
                return ExitCode::FAILURE;
            }
        };
        server.announce(&listener);
        // On a worker thread, not the main thread (which is no worker): spawning each
        // connection from there would cost a cross-thread wake-up per connection.
        match tokio::spawn(server.run(listener, websockify::shutdown_signal())).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("websockify: server task failed: {err}");
                ExitCode::FAILURE
            }
        }
    })
}
