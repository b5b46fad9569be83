//! reload: the server's TLS configuration, replaceable while it serves. SIGHUP reloads it;
//! between signals, the certificate, key and CA files are looked at every
//! [`CERT_POLL_INTERVAL`] (a `stat` each, following symlinks, as certbot swaps them) and a
//! change reloads it too. A new configuration serves the next handshake; sessions already
//! running keep theirs. A reload that fails logs one line naming the file and keeps the old.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;
use tracing::{error, info};

use super::TlsError;
use crate::config::Settings;

/// How often the certificate files are looked at between signals: a `stat` per file, so cheap;
/// a renewed certificate is served within this.
pub const CERT_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What a file looked like: device, inode, modification time (ns), size. `None`: missing.
type Stamp = Option<(u64, u64, i128, u64)>;

/// The TLS configuration being served, and what its files looked like when it was loaded.
pub struct Reloadable {
    current: ArcSwap<ServerConfig>,
    files: Vec<PathBuf>,
    state: Mutex<Seen>,
}

struct Seen {
    stamps: Vec<Stamp>,
    /// The leaf certificate served now: a reload says whether it changed.
    leaf: CertificateDer<'static>,
}

impl Reloadable {
    /// Loads the configuration `settings` ask for; `Ok(None)` without TLS (see [`super::load`]).
    pub fn load(settings: &Settings) -> Result<Option<Reloadable>, TlsError> {
        let files = watched_files(settings);
        let stamps = stamps(&files);
        Ok(super::load(settings)?.map(|(config, leaf)| Reloadable {
            current: ArcSwap::new(config),
            files,
            state: Mutex::new(Seen { stamps, leaf }),
        }))
    }

    /// The configuration for the next handshake.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Whether a watched file changed since the last look (or load). Each change is reported
    /// once, so a file that fails to load is not retried until it changes again.
    pub fn files_changed(&self) -> bool {
        let now = stamps(&self.files);
        let Ok(mut seen) = self.state.lock() else {
            return false;
        };
        if seen.stamps == now {
            return false;
        }
        seen.stamps = now;
        true
    }

    /// Reloads from the files `settings` name, logging what changed; on failure logs one error
    /// line naming the file and keeps serving the old configuration. Blocking (reads files).
    pub fn reload(&self, settings: &Settings) {
        let stamps = stamps(&self.files);
        let loaded = super::load(settings).and_then(|loaded| {
            loaded.ok_or_else(|| {
                TlsError(format!("--cert {}: no such file", settings.cert.display()))
            })
        });
        let Ok(mut seen) = self.state.lock() else {
            return;
        };
        seen.stamps = stamps;
        match loaded {
            Ok((config, leaf)) => {
                self.current.store(config);
                if leaf == seen.leaf {
                    info!(
                        "reloaded TLS configuration; certificate {} unchanged",
                        settings.cert.display()
                    );
                } else {
                    info!(
                        "reloaded certificate {} ({})",
                        settings.cert.display(),
                        describe(&leaf)
                    );
                    seen.leaf = leaf;
                }
            }
            Err(err) => error!("TLS reload failed, keeping the previous certificate: {err}"),
        }
    }
}

/// The files the configuration is made of.
fn watched_files(settings: &Settings) -> Vec<PathBuf> {
    let mut files = vec![settings.cert.clone()];
    files.extend(settings.key.clone());
    if settings.verify_client {
        files.extend(settings.cafile.clone());
    }
    files
}

fn stamps(files: &[PathBuf]) -> Vec<Stamp> {
    files
        .iter()
        .map(|path| {
            // `metadata` follows symlinks: a swapped link shows as another inode.
            std::fs::metadata(path).ok().map(|m| {
                let mtime = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
                (m.dev(), m.ino(), mtime, m.len())
            })
        })
        .collect()
}

/// "subject CN=…, not after …" of a certificate, for the log.
fn describe(der: &CertificateDer<'_>) -> String {
    use x509_cert::der::Decode;
    match x509_cert::Certificate::from_der(der) {
        Ok(cert) => {
            let tbs = &cert.tbs_certificate;
            format!(
                "subject {}, not after {}",
                tbs.subject, tbs.validity.not_after
            )
        }
        Err(_) => "not parsed".to_owned(),
    }
}

/// Reloads `tls` whenever its files change, looking every [`CERT_POLL_INTERVAL`]; runs until
/// dropped.
pub async fn watch(tls: Arc<Reloadable>, settings: Arc<Settings>) {
    let mut every = tokio::time::interval(CERT_POLL_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let (tls, settings) = (tls.clone(), settings.clone());
        let _ = tokio::task::spawn_blocking(move || {
            if tls.files_changed() {
                info!("certificate files changed on disk");
                tls.reload(&settings);
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Listen, TargetSpec};
    use std::time::{Duration, SystemTime};

    /// A self-signed certificate and its key, as PEM.
    fn cert_and_key() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    fn settings(dir: &std::path::Path, verify_client: bool) -> Settings {
        let mut settings = Settings::new(
            Listen::Tcp {
                host: "127.0.0.1".into(),
                port: 0,
            },
            TargetSpec::Tcp {
                host: "127.0.0.1".into(),
                port: 1,
            },
        );
        let (cert, key) = cert_and_key();
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        std::fs::write(dir.join("key.pem"), key).unwrap();
        std::fs::write(dir.join("ca.pem"), cert_and_key().0).unwrap();
        settings.cert = dir.join("cert.pem");
        settings.cert_given = true;
        settings.key = Some(dir.join("key.pem"));
        settings.cafile = Some(dir.join("ca.pem"));
        settings.verify_client = verify_client;
        settings
    }

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wsfy-reload-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Sets `path`'s modification time, its size and inode unchanged.
    fn touch(path: &std::path::Path, at: SystemTime) {
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.set_modified(at).unwrap();
    }

    /// Nothing changed is no change (a poll would otherwise reload every 2 s); each change is
    /// reported once; the certificate and key files are watched, the CA file only with
    /// `--verify-client` (without it the CAs are not used).
    #[test]
    fn each_watched_file_change_is_reported_once() {
        for verify_client in [false, true] {
            let dir = dir(&format!("watched-{verify_client}"));
            let settings = settings(&dir, verify_client);
            let tls = Reloadable::load(&settings).unwrap().unwrap();
            assert!(!tls.files_changed(), "nothing changed yet");
            let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
            for (i, name) in ["cert.pem", "key.pem", "ca.pem"].into_iter().enumerate() {
                touch(&dir.join(name), base + Duration::from_secs(i as u64));
                let watched = name != "ca.pem" || verify_client;
                assert_eq!(
                    tls.files_changed(),
                    watched,
                    "{name}, verify_client {verify_client}"
                );
                assert!(!tls.files_changed(), "{name}: reported once");
            }
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// A change of the modification time alone is a change, whatever its seconds and
    /// nanoseconds: one second later on a file system that keeps whole seconds (nanoseconds
    /// 0), and a second later but a nanosecond earlier in it.
    #[test]
    fn a_new_modification_time_alone_is_a_change() {
        let dir = dir("mtime");
        let settings = settings(&dir, false);
        let cert = dir.join("cert.pem");
        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let steps = [
            (base, base + Duration::from_secs(1)),
            (
                base + Duration::from_nanos(1),
                base + Duration::from_secs(1),
            ),
        ];
        for (before, after) in steps {
            touch(&cert, before);
            let tls = Reloadable::load(&settings).unwrap().unwrap();
            touch(&cert, after);
            assert!(tls.files_changed(), "{before:?} -> {after:?}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
