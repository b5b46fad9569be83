//! tls: turns `--cert`/`--key`/`--key-password`/`--ssl-version` into a rustls server configuration (errors
//! name the flag and the file, and say what to do), and reads what a handshake told us.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tracing::warn;

use crate::config::{Settings, TlsMinVersion};
use crate::conninfo::TlsInfo;

/// A start-up error about TLS settings: one line for the user.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

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
    let key = read_key(key_path, key_flag, settings.key_password.as_deref())?;
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

/// The PEM label of an encrypted PKCS#8 private key (RFC 5958).
const ENCRYPTED_KEY_BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
const ENCRYPTED_KEY_END: &str = "-----END ENCRYPTED PRIVATE KEY-----";

/// Reads the private key from `path` (named `flag` in errors): a plain PEM key (PKCS#8, PKCS#1
/// or SEC1), or an encrypted PKCS#8 key decrypted with `--key-password` (PBES2: PBKDF2 or
/// scrypt with AES-CBC, what `openssl pkcs8 -topk8 -v2 aes-256-cbc` and OpenSSL 3's defaults
/// write). OpenSSL's legacy encrypted PEM (`Proc-Type: 4,ENCRYPTED`) is refused with how to
/// convert it.
fn read_key(
    path: &Path,
    flag: &str,
    password: Option<&str>,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let shown = path.display();
    let bytes = std::fs::read(path)
        .map_err(|e| TlsError(format!("{flag} {shown}: cannot read the private key: {e}")))?;
    let text = String::from_utf8_lossy(&bytes);
    if let Some(pem) = encrypted_block(&text) {
        let Some(password) = password else {
            return Err(TlsError(format!(
                "{flag} {shown}: the private key is encrypted; give its password with \
                 --key-password"
            )));
        };
        let (_, document) = pkcs8::der::SecretDocument::from_pem(pem).map_err(|e| {
            TlsError(format!(
                "{flag} {shown}: cannot read the encrypted private key: {e}"
            ))
        })?;
        let info = pkcs8::EncryptedPrivateKeyInfo::try_from(document.as_bytes()).map_err(|e| {
            TlsError(format!(
                "{flag} {shown}: cannot read the encrypted private key ({e}); supported: \
                 PKCS#8 with PBES2 (PBKDF2 or scrypt, AES-CBC)"
            ))
        })?;
        let decrypted = info.decrypt(password).map_err(|_| {
            TlsError(format!(
                "--key-password: cannot decrypt the private key in {shown} (wrong password?)"
            ))
        })?;
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            decrypted.as_bytes().to_vec(),
        )));
    }
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(TlsError(format!(
            "{flag} {shown}: the private key is encrypted in OpenSSL's legacy PEM format, which \
             is not supported; convert it to PKCS#8 with `openssl pkcs8 -topk8 -v2 aes-256-cbc`"
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        TlsError(format!(
            "{flag} {shown}: no private key found ({e}); give the key with --key FILE"
        ))
    })?;
    if password.is_some() {
        warn!(
            "--key-password: the private key in {shown} is not encrypted; the password is not used"
        );
    }
    Ok(key)
}

/// The first `ENCRYPTED PRIVATE KEY` PEM block in `text`, if any.
fn encrypted_block(text: &str) -> Option<&str> {
    let start = text.find(ENCRYPTED_KEY_BEGIN)?;
    let end = text[start..].find(ENCRYPTED_KEY_END)? + start + ENCRYPTED_KEY_END.len();
    Some(&text[start..end])
}

/// What a finished handshake says about the client, for the connection's [`TlsInfo`].
pub fn info(conn: &rustls::ServerConnection) -> TlsInfo {
    TlsInfo {
        sni: conn.server_name().map(str::to_owned),
    }
}
