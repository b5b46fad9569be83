//! tls: turns `--cert`/`--key`/`--key-password`/`--ssl-version`/`--verify-client`/`--cafile` into a rustls server configuration (errors
//! name the flag and the file, and say what to do), and reads what a handshake told us.

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tracing::warn;

use crate::config::{Settings, TlsMinVersion};
use crate::conninfo::TlsInfo;

pub mod reload;
pub mod stream;

/// TLS 1.3 session tickets sent after each handshake (full or resumed).
const TLS13_TICKETS: usize = 1;

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
/// certificate named by `--cert` must exist. The leaf certificate comes with it, for the
/// reload's log line.
pub fn load(
    settings: &Settings,
) -> Result<Option<(Arc<ServerConfig>, CertificateDer<'static>)>, TlsError> {
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
        // Without TLS nobody would be asked for a certificate: refuse rather than serve
        // everyone unauthenticated (the reference would).
        if settings.verify_client {
            return Err(TlsError(format!(
                "--verify-client: no certificate to serve TLS with (give it with --cert FILE; \
                 no {} here)",
                cert_path.display()
            )));
        }
        return Ok(None);
    }
    let certs = read_certs(cert_path)?;
    // `read_certs` returns at least one.
    let leaf = certs
        .first()
        .cloned()
        .unwrap_or_else(|| CertificateDer::from(Vec::new()));
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
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(list) = &settings.ssl_ciphers {
        provider.cipher_suites = cipher_suites(list)?;
    }
    let provider = Arc::new(provider);
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError(format!("--ssl-version: {e}")))?;
    let builder = if settings.verify_client {
        builder.with_client_cert_verifier(client_verifier(settings, provider)?)
    } else {
        if let Some(cafile) = &settings.cafile {
            warn!(
                "--cafile {}: not used without --verify-client (no client certificates are asked for)",
                cafile.display()
            );
        }
        builder.with_no_client_auth()
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        TlsError(format!(
            "--cert {}: certificate and key do not fit together: {e}",
            cert_path.display()
        ))
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // The unbuffered connection has no `server_name()`: the resolver notes it for `accept`.
    config.cert_resolver = Arc::new(stream::NoteSni(config.cert_resolver.clone()));
    // Resumption by ticket: a returning client (noVNC reconnecting) skips the full handshake,
    // and the server keeps nothing per client for it (rustls' default is a table of 256
    // sessions, which a busy server cycles through in seconds). The ticket key rotates every
    // 6 hours; a reload makes a new one, so older tickets get a full handshake.
    config.ticketer = rustls::crypto::ring::Ticketer::new()
        .map_err(|e| TlsError(format!("TLS session tickets: {e}")))?;
    // One TLS 1.3 ticket per handshake, not rustls' 2: a reconnecting client resumes with it
    // and gets a fresh one each time, and browsers keep only the newest per server anyway.
    // Each ticket costs a key derivation, an AEAD seal and a record per handshake.
    config.send_tls13_tickets = TLS13_TICKETS;
    Ok(Some((Arc::new(config), leaf)))
}

/// `--verify-client`: a verifier requiring a client certificate that chains to a CA of
/// `--cafile`, or of the system's store (`/etc/ssl/certs`, `SSL_CERT_FILE`, `SSL_CERT_DIR`) when
/// it is absent, as the reference.
fn client_verifier(
    settings: &Settings,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let roots = match &settings.cafile {
        Some(cafile) => ca_roots(cafile, "--cafile")?,
        None => system_roots("--verify-client", "--cafile")?,
    };
    if !settings.ssl_only {
        warn!(
            "--verify-client: plain ws:// clients are still served, without a certificate; add \
             --ssl-only to refuse them"
        );
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| TlsError(format!("--verify-client: {e}")))
}

/// The CA certificates in the PEM file `path` (named `flag` in errors), as trust anchors.
pub(crate) fn ca_roots(path: &Path, flag: &str) -> Result<rustls::RootCertStore, TlsError> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError(format!("{flag} {shown}: cannot read certificates: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{flag} {shown}: no PEM certificate in this file"
        )));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| TlsError(format!("{flag} {shown}: not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// The system's CA certificates (`rustls-native-certs`: `SSL_CERT_FILE`/`SSL_CERT_DIR`, else
/// the distribution's store, `/etc/ssl/certs` on Debian). None found is an error naming `flag`
/// and pointing at `instead`, the option that names CAs explicitly.
pub(crate) fn system_roots(flag: &str, instead: &str) -> Result<rustls::RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = match found.errors.first() {
            Some(e) => format!(" ({e})"),
            None => String::new(),
        };
        return Err(TlsError(format!(
            "{flag}: no CA certificates found in the system store{why}; name the CAs with \
             {instead} FILE"
        )));
    }
    Ok(roots)
}

/// `--ssl-target`: the rustls client configuration for targets, or `None` without it. Trusts
/// the CAs of `--target-cafile`, else the system's store; `--target-insecure` verifies nothing
/// but the handshake's signatures (a start-up warning says so).
pub fn target_client(settings: &Settings) -> Result<Option<Arc<ClientConfig>>, TlsError> {
    if !settings.ssl_target {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("--ssl-target: {e}")))?;
    let config = if settings.target_insecure {
        warn!(
            "--target-insecure: the target's TLS certificate is not verified; anyone on the path \
             to the target can read and change the traffic"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoTargetVerification(provider)))
            .with_no_client_auth()
    } else {
        let roots = match &settings.target_cafile {
            Some(cafile) => ca_roots(cafile, "--target-cafile")?,
            None => system_roots("--ssl-target", "--target-cafile")?,
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Some(Arc::new(config)))
}

/// `--target-insecure`: any certificate is accepted; the handshake signatures are still checked
/// (they prove nothing about who signed without a trusted certificate, but keep the TLS
/// machinery honest).
#[derive(Debug)]
struct NoTargetVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoTargetVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
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

/// The suites rustls (ring) offers: (suite, OpenSSL name, IANA name).
const SUITES: &[(rustls::CipherSuite, &str, &str)] = {
    use rustls::CipherSuite as C;
    &[
        (
            C::TLS13_AES_256_GCM_SHA384,
            "TLS_AES_256_GCM_SHA384",
            "TLS_AES_256_GCM_SHA384",
        ),
        (
            C::TLS13_AES_128_GCM_SHA256,
            "TLS_AES_128_GCM_SHA256",
            "TLS_AES_128_GCM_SHA256",
        ),
        (
            C::TLS13_CHACHA20_POLY1305_SHA256,
            "TLS_CHACHA20_POLY1305_SHA256",
            "TLS_CHACHA20_POLY1305_SHA256",
        ),
        (
            C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            "ECDHE-ECDSA-AES256-GCM-SHA384",
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        ),
        (
            C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        ),
        (
            C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            "ECDHE-ECDSA-CHACHA20-POLY1305",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        ),
        (
            C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            "ECDHE-RSA-AES256-GCM-SHA384",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        ),
        (
            C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            "ECDHE-RSA-AES128-GCM-SHA256",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        ),
        (
            C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            "ECDHE-RSA-CHACHA20-POLY1305",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        ),
    ]
};

/// `--ssl-ciphers`: suite names separated by `:` (or `,` or spaces), in OpenSSL's spelling
/// (`ECDHE-RSA-AES128-GCM-SHA256`) or IANA's (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`). As with
/// the reference's OpenSSL, the list restricts TLS 1.2; TLS 1.3 suites stay all enabled unless
/// the list names some (`TLS_AES_128_GCM_SHA256`...), then only those. A name rustls does not
/// implement, an OpenSSL keyword (`HIGH`, `!aNULL`) or an unknown name is an error naming it.
fn cipher_suites(list: &str) -> Result<Vec<rustls::SupportedCipherSuite>, TlsError> {
    let all = rustls::crypto::ring::ALL_CIPHER_SUITES;
    let mut tls12 = Vec::new();
    let mut tls13 = Vec::new();
    for name in list.split([':', ',', ' ']).filter(|n| !n.is_empty()) {
        let Some((suite, _, _)) = SUITES
            .iter()
            .find(|(_, openssl, iana)| name == *openssl || name == *iana)
        else {
            return Err(TlsError(format!(
                "--ssl-ciphers: {name}: {}",
                why_not(name)
            )));
        };
        let Some(found) = all.iter().find(|s| s.suite() == *suite) else {
            return Err(TlsError(format!(
                "--ssl-ciphers: {name}: not offered by this build of rustls"
            )));
        };
        let list = match found {
            rustls::SupportedCipherSuite::Tls13(_) => &mut tls13,
            rustls::SupportedCipherSuite::Tls12(_) => &mut tls12,
        };
        if !list.contains(found) {
            list.push(*found);
        }
    }
    if tls12.is_empty() && tls13.is_empty() {
        return Err(TlsError("--ssl-ciphers: no cipher suite named".to_owned()));
    }
    if tls13.is_empty() {
        tls13 = all
            .iter()
            .filter(|s| matches!(s, rustls::SupportedCipherSuite::Tls13(_)))
            .copied()
            .collect();
    }
    tls13.extend(tls12);
    Ok(tls13)
}

/// Why `name` is no suite rustls can use, for the error message.
fn why_not(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    let has = |part: &str| upper.contains(part);
    let reason = if has("RC4") || has("DES") || has("NULL") || has("EXPORT") || has("MD5") {
        Some("a broken cipher that rustls does not implement")
    } else if upper.starts_with("DHE-") || upper.starts_with("EDH-") || has("_DHE_") {
        Some("finite-field DHE key exchange is not implemented by rustls")
    } else if has("PSK") || has("SRP") || has("ADH") || has("AECDH") || has("ANON") {
        Some("a suite without certificates, which rustls does not implement")
    } else if has("CAMELLIA") || has("ARIA") || has("SEED") || has("IDEA") || has("CCM") {
        Some("a cipher rustls does not implement")
    } else if has("CBC")
        || upper.ends_with("-SHA")
        || upper.ends_with("-SHA256") && !has("GCM")
        || upper.ends_with("-SHA384") && !has("GCM")
    {
        Some("a CBC-mode suite, which rustls does not implement (AEAD suites only)")
    } else if upper.starts_with("AES") || upper.starts_with("TLS_RSA_") {
        Some("static RSA key exchange (no forward secrecy) is not implemented by rustls")
    } else {
        None
    };
    let names: Vec<&str> = SUITES.iter().map(|(_, openssl, _)| *openssl).collect();
    let offered = names.join(":");
    match reason {
        Some(reason) => format!("{reason}; rustls offers {offered}"),
        None if name.starts_with(['!', '-', '+', '@'])
            || name.chars().all(|c| c.is_ascii_alphabetic()) =>
        {
            format!(
                "OpenSSL cipher keywords and exclusions are not supported; list suite names, from \
             {offered}"
            )
        }
        None => format!("unknown cipher suite; rustls offers {offered}"),
    }
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

/// What a finished handshake says about the client, for the connection's [`TlsInfo`]. A
/// client certificate is only there when `--verify-client` asked for it and it was verified.
pub fn info(
    conn: &rustls::server::UnbufferedServerConnection,
    handshaken: stream::Handshaken,
) -> TlsInfo {
    TlsInfo {
        sni: handshaken.sni,
        client_cn: conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| common_name(leaf)),
    }
}

/// The subject common name (CN) of a DER certificate; the last one when there are several, as
/// the reference (a dict of the subject's attributes). `None` when the certificate cannot be
/// parsed or has no CN in a string type.
fn common_name(der: &[u8]) -> Option<String> {
    use x509_cert::der::{Decode, Tag, Tagged};
    const CN: x509_cert::der::oid::ObjectIdentifier =
        x509_cert::der::oid::ObjectIdentifier::new_unwrap("2.5.4.3");
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let subject = &cert.tbs_certificate.subject;
    let value = subject
        .0
        .iter()
        .rev()
        .flat_map(|rdn| rdn.0.iter().rev())
        .find(|atv| atv.oid == CN)?;
    let bytes = value.value.value();
    match value.value.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::TeletexString => {
            std::str::from_utf8(bytes).ok().map(str::to_owned)
        }
        Tag::BmpString => {
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    use tokio_rustls::TlsConnector;

    fn dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("wsfy-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        (params.self_signed(&key).unwrap(), key)
    }

    fn leaf(cns: &[&str], ca: &(rcgen::Certificate, KeyPair)) -> (rcgen::Certificate, KeyPair) {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Org");
        for cn in cns {
            params.distinguished_name.push(DnType::CommonName, *cn);
        }
        let key = KeyPair::generate().unwrap();
        (params.signed_by(&key, &ca.0, &ca.1).unwrap(), key)
    }

    #[test]
    fn common_name_is_the_subjects_cn_or_none() {
        let ca = ca("a CA");
        assert_eq!(common_name(ca.0.der()).as_deref(), Some("a CA"));
        assert_eq!(
            common_name(leaf(&["alice.example"], &ca).0.der()).as_deref(),
            Some("alice.example")
        );
        assert_eq!(common_name(leaf(&[], &ca).0.der()), None);
        assert_eq!(common_name(b"not a certificate"), None);
        // Unicode survives (UTF8String).
        assert_eq!(
            common_name(leaf(&["Zoë"], &ca).0.der()).as_deref(),
            Some("Zoë")
        );
    }

    /// A real handshake through `load` with `--verify-client`: the verified certificate's CN
    /// lands in the connection's `TlsInfo`; without `--verify-client` there is none.
    #[tokio::test]
    async fn a_verified_client_certificate_cn_is_in_the_tls_info() {
        let ca = ca("client CA");
        let server_ca = self::ca("server CA");
        let (server_cert, server_key) = leaf(&["server"], &server_ca);
        let (client_cert, client_key) = leaf(&["alice"], &ca);
        let dir = dir("cn");
        let cert_file = dir.join("server.pem");
        std::fs::write(
            &cert_file,
            format!("{}{}", server_cert.pem(), server_key.serialize_pem()),
        )
        .unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.0.pem()).unwrap();

        for verify_client in [true, false] {
            let mut settings = Settings::new(
                crate::config::Listen::Tcp {
                    host: "127.0.0.1".into(),
                    port: 0,
                },
                crate::config::TargetSpec::Tcp {
                    host: "127.0.0.1".into(),
                    port: 1,
                },
            );
            settings.cert = cert_file.clone();
            settings.cert_given = true;
            settings.ssl_only = true;
            settings.verify_client = verify_client;
            settings.cafile = Some(ca_file.clone());
            let (server, _) = load(&settings).unwrap().unwrap();

            let mut roots = rustls::RootCertStore::empty();
            roots.add(server_ca.0.der().clone()).unwrap();
            let client = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![client_cert.der().clone()],
                PrivateKeyDer::Pkcs8(client_key.serialize_der().into()),
            )
            .unwrap();
            let (client_io, server_io) = tokio::io::duplex(64 * 1024);
            let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
            let (accepted, connected) = tokio::join!(
                stream::accept(server_io, server),
                TlsConnector::from(Arc::new(client)).connect(name, client_io)
            );
            connected.unwrap();
            let (accepted, handshaken) = accepted.unwrap();
            let info = info(accepted.connection(), handshaken);
            let want = verify_client.then(|| "alice".to_owned());
            assert_eq!(info.client_cn, want, "verify_client {verify_client}");
        }
    }

    /// The system store is what rustls-native-certs finds: `SSL_CERT_FILE`/`SSL_CERT_DIR` when
    /// set (the one test that sets them, restoring them after: no other unit test reads the
    /// system store).
    #[test]
    fn system_roots_come_from_the_system_store_and_none_is_an_error_naming_the_flag() {
        let dir = dir("system");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca("system CA").0.pem()).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let empty_dir = dir.join("empty");
        std::fs::create_dir_all(&empty_dir).unwrap();
        let saved = ["SSL_CERT_FILE", "SSL_CERT_DIR"].map(|v| (v, std::env::var_os(v)));
        std::env::set_var("SSL_CERT_FILE", &ca_file);
        std::env::set_var("SSL_CERT_DIR", "");
        let roots = system_roots("--verify-client", "--cafile");
        std::env::set_var("SSL_CERT_FILE", &empty);
        std::env::set_var("SSL_CERT_DIR", &empty_dir);
        let none = system_roots("--verify-client", "--cafile");
        for (var, value) in saved {
            match value {
                Some(value) => std::env::set_var(var, value),
                None => std::env::remove_var(var),
            }
        }
        assert_eq!(roots.unwrap().len(), 1);
        let message = none.unwrap_err().0;
        assert!(message.starts_with("--verify-client: "), "{message}");
        assert!(message.contains("--cafile FILE"), "{message}");
    }

    /// `--ssl-ciphers`: both spellings, any separator, each suite once; TLS 1.2 names keep every
    /// TLS 1.3 suite, TLS 1.3 names keep only those.
    #[test]
    fn cipher_lists_name_suites_in_either_spelling() {
        use rustls::CipherSuite as C;
        let suites = |list: &str| {
            cipher_suites(list).map(|s| s.iter().map(|s| s.suite()).collect::<Vec<_>>())
        };
        let tls13 = [
            C::TLS13_AES_256_GCM_SHA384,
            C::TLS13_AES_128_GCM_SHA256,
            C::TLS13_CHACHA20_POLY1305_SHA256,
        ];
        let with_tls13 = |tls12: &[C]| [&tls13[..], tls12].concat();
        assert_eq!(
            suites("ECDHE-RSA-AES128-GCM-SHA256").unwrap(),
            with_tls13(&[C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256])
        );
        assert_eq!(
            suites("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256").unwrap(),
            with_tls13(&[C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256])
        );
        // Separators, empty names between them, a suite named twice (in both spellings).
        assert_eq!(
            suites(
                ":ECDHE-RSA-AES256-GCM-SHA384, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384::\
                 ECDHE-ECDSA-AES128-GCM-SHA256:"
            )
            .unwrap(),
            with_tls13(&[
                C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            ])
        );
        assert_eq!(
            suites("TLS_CHACHA20_POLY1305_SHA256:ECDHE-RSA-AES128-GCM-SHA256").unwrap(),
            [
                C::TLS13_CHACHA20_POLY1305_SHA256,
                C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            ]
        );
        assert_eq!(
            suites(" , ").unwrap_err().0,
            "--ssl-ciphers: no cipher suite named"
        );
        let err = suites("ECDHE-RSA-AES128-GCM-SHA256:HIGH").unwrap_err().0;
        assert!(
            err.starts_with("--ssl-ciphers: HIGH: OpenSSL cipher keywords"),
            "{err}"
        );
    }

    /// Each kind of name rustls cannot use gets its own reason (one name for each word looked
    /// for, so that every alternative is seen on its own), then the suites it offers.
    #[test]
    fn each_unusable_cipher_name_gets_its_reason() {
        let cases: &[(&str, &[&str])] = &[
            (
                "a broken cipher",
                &[
                    "ECDHE-RSA-RC4-SHA",
                    "ECDHE-RSA-DES-CBC3-SHA",
                    "ECDHE-RSA-NULL-SHA",
                    "TLS_RSA_EXPORT_WITH_AES",
                    "TLS_RSA_WITH_HMAC_MD5",
                ],
            ),
            (
                "finite-field DHE",
                &[
                    "DHE-RSA-AES128-GCM-SHA256",
                    "EDH-RSA-AES128-GCM-SHA256",
                    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
                ],
            ),
            (
                "a suite without certificates",
                &[
                    "PSK-AES128-GCM-SHA256",
                    "SRP-AES-128-GCM",
                    "ADH-AES128-GCM-SHA256",
                    "AECDH-AES128-GCM-SHA256",
                    "TLS_ECDH_ANON_WITH_AES_128_GCM_SHA256",
                ],
            ),
            (
                "a cipher rustls does not implement",
                &[
                    "ECDHE-RSA-CAMELLIA128-GCM",
                    "ECDHE-RSA-ARIA128-GCM-SHA256",
                    "SEED-GCM",
                    "IDEA-GCM",
                    "ECDHE-ECDSA-AES128-CCM",
                ],
            ),
            (
                "a CBC-mode suite",
                &[
                    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
                    "ECDHE-RSA-AES128-SHA",
                    "ECDHE-RSA-AES128-SHA256",
                    "ECDHE-RSA-AES256-SHA384",
                ],
            ),
            (
                "static RSA key exchange",
                &["AES128-GCM-SHA256", "TLS_RSA_WITH_AES_128_GCM_SHA256"],
            ),
            (
                "OpenSSL cipher keywords and exclusions are not supported",
                &["HIGH", "!aRSA", "-kRSA", "+AES", "@STRENGTH"],
            ),
            (
                "unknown cipher suite",
                &["FOO-BAR", "ECDHE-RSA-AES128-GCM-SHA512", "SUITE1"],
            ),
        ];
        let offered = "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:\
                       ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:\
                       ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES256-GCM-SHA384:\
                       ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305";
        for (reason, names) in cases {
            for name in *names {
                let why = why_not(name);
                assert!(why.starts_with(reason), "{name}: {why}");
                assert!(why.ends_with(offered), "{name}: {why}");
            }
        }
    }

    #[test]
    fn the_encrypted_block_is_cut_out_of_the_file_exactly() {
        let block = format!("{ENCRYPTED_KEY_BEGIN}\nMIIB\n{ENCRYPTED_KEY_END}");
        let text = format!("a certificate first\n{block}\ntrailing text\n");
        assert_eq!(encrypted_block(&text), Some(block.as_str()));
        assert_eq!(encrypted_block(&block), Some(block.as_str()));
        assert_eq!(
            encrypted_block(&format!("x{ENCRYPTED_KEY_BEGIN}\nMIIB\n")),
            None
        );
        assert_eq!(encrypted_block("-----BEGIN PRIVATE KEY-----\n"), None);
    }

    /// A CN in a BMPString (UTF-16, what some Windows CAs write) is read too.
    #[test]
    fn a_bmp_string_common_name_is_read() {
        let ca = ca("a CA");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            rcgen::DnValue::BmpString("Zoë".try_into().unwrap()),
        );
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca.0, &ca.1).unwrap();
        assert_eq!(common_name(cert.der()).as_deref(), Some("Zoë"));
    }
}
