//! tls: turns `--cert`/`--key`/`--ssl-version` into a rustls server configuration (errors
//! name the flag and the file, and say what to do), and reads what a handshake told us.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{Settings, TlsMinVersion};
use crate::conninfo::TlsInfo;

/// A start-up error about TLS settings: one line for the user.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

impl From<TlsError> for crate::error::StartError {
    fn from(err: TlsError) -> Self {
        crate::error::StartError::new(err)
    }
}

/// Loads the server's TLS configuration. `Ok(None)` when `--cert` was not given, the default
/// `self.pem` does not exist and TLS is optional (no `--ssl-only`, no `--key`): the server then
/// serves plain clients only and drops TLS ones with a log line, as the reference does. A
/// certificate named by `--cert` must exist.
pub fn load(settings: &Settings) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    let cert_path = &settings.cert;
    if !cert_path.exists() {
        if settings.cert_given {
            return Err(TlsError(format!(
                "--cert {}: no such file",
                cert_path.display()
            )));
        }
        if let Some(key) = &settings.key {
            return Err(TlsError(format!(
                "--key {}: no certificate to go with it (give it with --cert FILE)",
                key.display()
            )));
        }
        if settings.ssl_only {
            return Err(TlsError(format!(
                "--ssl-only: no certificate to serve with (give it with --cert FILE; no {} here)",
                cert_path.display()
            )));
        }
        return Ok(None);
    }
    let certs = read_certs(cert_path)?;
    let key_path = settings.key.as_deref().unwrap_or(cert_path);
    let key_flag = if settings.key.is_some() {
        "--key"
    } else {
        "--cert"
    };
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
        TlsError(format!(
            "{key_flag} {}: no private key found ({e}); give the key with --key FILE",
            key_path.display()
        ))
    })?;
    let versions: &[&rustls::SupportedProtocolVersion] = match settings.ssl_min_version {
        TlsMinVersion::Default | TlsMinVersion::Tls12 => {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        }
        TlsMinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| TlsError(format!("--ssl-version: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            TlsError(format!(
                "--cert {}: certificate and key do not fit together: {e}",
                cert_path.display()
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            TlsError(format!(
                "--cert {}: cannot read certificates: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "--cert {}: no PEM certificate in this file",
            path.display()
        )));
    }
    Ok(certs)
}

/// What a finished handshake says about the client, for the connection's [`TlsInfo`].
pub fn info(conn: &rustls::ServerConnection) -> TlsInfo {
    TlsInfo {
        sni: conn.server_name().map(str::to_owned),
        // Filled by `--verify-client` (its own branch); no client certificate is asked for yet.
        client_cn: None,
    }
}
