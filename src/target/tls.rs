//! tls: a TCP target spoken to over TLS (`--ssl-target`), as a rustls client. The server name
//! sent (SNI) and verified is the target's host as given; an IP address is verified against the
//! certificate's IP addresses. Which CAs are trusted (`--target-cafile`, the system's store, or
//! none with `--target-insecure`) is decided at start-up in the `ClientConfig`.

use std::io;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Runs the TLS handshake on a connected `tcp` for `host`. A failed handshake (an untrusted or
/// mismatching certificate, a target that does not speak TLS) is an error of the connect.
pub(super) async fn handshake(
    tcp: TcpStream,
    host: &str,
    config: &Arc<ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(host.to_owned()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{host:?} is no TLS server name: {e}"),
        )
    })?;
    TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake with the target: {e}")))
}
