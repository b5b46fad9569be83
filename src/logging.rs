//! logging: tracing set-up, and the start-up lines users of the reference look for.

use std::borrow::Cow;
use std::io::IsTerminal;

use tokio::net::TcpListener;
use tracing::info;
use tracing_subscriber::EnvFilter;

use crate::settings::Settings;

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

/// The reference's start-up summary.
pub fn announce(settings: &Settings, listener: &TcpListener) {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    info!("WebSocket server settings:");
    info!("  - Listen on {addr}");
    info!("  - Proxying to {}", settings.target);
    match &settings.web {
        Some(dir) if settings.file_only => info!(
            "  - Web server (no directory listings), web root: {}",
            dir.display()
        ),
        Some(dir) => info!("  - Web server, web root: {}", dir.display()),
        None => info!("  - No web server"),
    }
    if settings.run_once {
        info!("  - Exiting after one WebSocket session (--run-once)");
    }
    if settings.ssl_only {
        info!(
            "  - SSL/TLS only (wss://), certificate {}",
            settings.cert.display()
        );
    } else if settings.cert.exists() {
        info!(
            "  - SSL/TLS support (ws:// and wss://), certificate {}",
            settings.cert.display()
        );
    } else {
        // As the reference: no file name (the default self.pem was never asked for).
        info!("  - No SSL/TLS support (no cert file)");
    }
}

/// The request target (path and query) as it may be logged: the value of every query
/// parameter whose name, percent-decoded and compared case-insensitively, contains `token`,
/// `password`, `secret` or `key` becomes `REDACTED`; everything else is kept byte for byte.
/// noVNC passes its token as `?token=…`, and a log file must not hand it to its readers.
pub fn redact_target(path_and_query: &str) -> Cow<'_, str> {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return Cow::Borrowed(path_and_query);
    };
    let secret = |param: &str| match param.split_once('=') {
        Some((name, value)) => !value.is_empty() && is_secret_name(name),
        None => false,
    };
    if !query.split('&').any(secret) {
        return Cow::Borrowed(path_and_query);
    }
    let params: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, _)) if secret(param) => Cow::Owned(format!("{name}=REDACTED")),
            _ => Cow::Borrowed(param),
        })
        .collect();
    Cow::Owned(format!("{path}?{}", params.join("&")))
}

fn is_secret_name(name: &str) -> bool {
    let decoded = String::from_utf8_lossy(&crate::web::percent_decode(name)).to_ascii_lowercase();
    ["token", "password", "secret", "key"]
        .iter()
        .any(|word| decoded.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_values_are_redacted_and_nothing_else_changes() {
        assert_eq!(
            redact_target("/websockify?token=abc"),
            "/websockify?token=REDACTED"
        );
        assert_eq!(
            redact_target("/?a=1&TOKEN=x&b=2"),
            "/?a=1&TOKEN=REDACTED&b=2"
        );
        assert_eq!(redact_target("/?%74oken=x"), "/?%74oken=REDACTED");
        assert_eq!(redact_target("/?tokenized=1"), "/?tokenized=REDACTED");
        assert_eq!(
            redact_target("/?password=p&api_key=k&secret=s"),
            "/?password=REDACTED&api_key=REDACTED&secret=REDACTED"
        );
    }

    #[test]
    fn targets_without_secret_values_are_borrowed_unchanged() {
        for target in [
            "/websockify",
            "/token/path",
            "/?token",
            "/?token=",
            "/?a=1&b=2",
            "/?",
        ] {
            assert!(matches!(redact_target(target), Cow::Borrowed(t) if t == target));
        }
    }
}
